'use strict';
// npm run pack:cuda: the optional CUDA package as a tarball. Builds libattnkit_cuda.so for every
// architecture of CMakeLists.txt's default list into build-cuda-package/ (unless --library names
// a built one), puts it in a copy of packages/linux-x64-cuda at attnkit's own version, and runs
// `npm pack` there; the tarball lands in the current directory.
//   node scripts/pack-cuda.js [--library path/to/libattnkit_cuda.so]
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const { version } = require(path.join(root, 'package.json'));
const at = process.argv.indexOf('--library');
let library = at > 0 ? path.resolve(process.argv[at + 1]) : null;
if (!library) {
  execFileSync('npx', ['cmake-js', 'compile', '--out', 'build-cuda-package', '--CDATTNKIT_CUDA=ON'], { cwd: root, stdio: 'inherit' });
  library = path.join(root, 'build-cuda-package', 'Release', 'libattnkit_cuda.so');
}
if (!fs.existsSync(library)) throw new Error(`no CUDA library at ${library}`);

const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'attnkit-cuda-package-'));
const template = path.join(root, 'packages', 'linux-x64-cuda');
for (const f of fs.readdirSync(template)) fs.copyFileSync(path.join(template, f), path.join(stage, f));
const manifest = JSON.parse(fs.readFileSync(path.join(stage, 'package.json'), 'utf8'));
manifest.version = version;  // exactly attnkit's: the loader takes no other
fs.writeFileSync(path.join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
fs.copyFileSync(library, path.join(stage, 'libattnkit_cuda.so'));
const tarball = execFileSync('npm', ['pack', '--silent', '--pack-destination', process.cwd()], { cwd: stage, encoding: 'utf8' }).trim().split('\n').pop();
fs.rmSync(stage, { recursive: true, force: true });
console.log(path.join(process.cwd(), tarball));
