#!/usr/bin/env node
'use strict';
// npx attnkit doctor [--json]: what attnkit finds on this machine (platform, Node, the addon, the
// CPU kernels, the CUDA library and devices) and what to do where something is missing.
// npx attnkit build [--cuda] [--gencode=<list>]: rebuilds the addon (and the CUDA library) from
// the shipped sources into the package's build/Release, which the loader prefers.
const usage = 'usage: attnkit doctor [--json]\n       attnkit build [--cuda] [--gencode="arch=compute_90a,code=sm_90a"]';
const [command, ...rest] = process.argv.slice(2);
const bad = () => { console.error(usage); process.exit(2); };
if (command === undefined || command === '--help' || command === '-h') {
  console.log(usage);
} else if (command === 'doctor') {
  if (rest.some((a) => a !== '--json')) bad();
  const { doctorReport, formatDoctor } = require('../dist/doctor');
  const report = doctorReport();
  console.log(rest.includes('--json') ? JSON.stringify(report, null, 2) : formatDoctor(report));
} else if (command === 'build') {
  const gencode = rest.find((a) => a.startsWith('--gencode='));
  if (rest.some((a) => a !== '--cuda' && a !== gencode)) bad();
  const { buildFromSource } = require('../dist/build');
  process.exitCode = buildFromSource({ cuda: rest.includes('--cuda'), gencode: gencode && gencode.slice('--gencode='.length) });
} else {
  bad();
}
