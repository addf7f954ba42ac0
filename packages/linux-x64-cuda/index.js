'use strict';
// attnkit finds this package by name (lib/native/cuda-package.ts) and reads the library's path
// from its folder; this export is for tools that want the file itself.
const path = require('path');
module.exports = { libraryPath: path.join(__dirname, 'libattnkit_cuda.so'), version: require('./package.json').version };
