// Writes dist/index.mjs, the ESM entry: it re-exports the CommonJS build, so `import { attention }
// from 'attnkit'` and `require('attnkit')` share one module instance (one thread pool, one addon).
const fs = require('fs');
const path = require('path');

const dist = path.join(__dirname, '..', 'dist');
const src = fs.readFileSync(path.join(dist, 'index.js'), 'utf8');
// tsc emits `Object.defineProperty(exports, "name", ...)` for every re-export.
const names = [...src.matchAll(/Object\.defineProperty\(exports, "(\w+)"/g)].map((m) => m[1]).filter((n) => n !== '__esModule');
if (names.length === 0) throw new Error('write-esm-entry: found no exports in dist/index.js');
const body = `import cjs from './index.js';\nexport const { ${names.join(', ')} } = cjs;\nexport default cjs;\n`;
fs.writeFileSync(path.join(dist, 'index.mjs'), body);
