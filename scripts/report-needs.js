'use strict';
// After `npm run prebuild`: which glibc (and any other versioned library) each prebuilt binary
// needs, read from its ELF (lib/elf-needs.ts). The oldest Linux a prebuild runs on is the one
// whose glibc has that version.
const fs = require('fs');
const path = require('path');
const { elfVersionNeeds } = require('../dist/elf-needs');

const dir = path.join(__dirname, '..', 'prebuilds');
for (const platform of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
  for (const file of fs.readdirSync(path.join(dir, platform)).filter((f) => f.endsWith('.node'))) {
    const needs = platform.startsWith('linux') ? elfVersionNeeds(path.join(dir, platform, file)) : {};
    console.log(`prebuilds/${platform}/${file}: needs ${Object.entries(needs).map(([lib, v]) => `${v} (${lib})`).join(', ') || 'nothing versioned'}`);
  }
}
