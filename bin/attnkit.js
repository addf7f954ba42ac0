#!/usr/bin/env node
'use strict';
// npx attnkit doctor [--json]: what attnkit finds on this machine (platform, Node, the addon, the
// CPU kernels, the CUDA library and devices) and what to do where something is missing.
const usage = 'usage: attnkit doctor [--json]';
const [command, ...rest] = process.argv.slice(2);
if (command !== 'doctor' || rest.some((a) => a !== '--json')) {
  console.error(usage);
  process.exit(command === undefined || command === '--help' || command === '-h' ? 0 : 2);
}
const { doctorReport, formatDoctor } = require('../dist/doctor');
const report = doctorReport();
console.log(rest.includes('--json') ? JSON.stringify(report, null, 2) : formatDoctor(report));
