#!/usr/bin/env bash
# Issue 7's install check: the packed tarball installs and runs with no compiler on PATH.
#   1. `npm run prebuild` (prebuilds/linux-x64/, glibc needs reported), `npm pack`.
#   2. With --cuda-library <libattnkit_cuda.so>: the optional CUDA package packed around it.
#   3. A clean directory outside the repository, PATH holding node and npm alone (no cc, c++, gcc,
#      make, python3, cmake, nvcc): `npm install <tarball(s)>` (dependencies from the npm registry),
#      then CommonJS and ESM programs run attention and compare with the float64 reference, and
#      `npx attnkit doctor --json` must name the prebuilt addon (and the package's CUDA library).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cuda_library=
[[ ${1:-} == --cuda-library ]] && cuda_library=$(realpath "$2")
work=$(mktemp -d /tmp/attnkit-pack-check.XXXXXX)
trap 'rm -rf "$work"' EXIT

npm run build:ts > /dev/null
npm run prebuild
tarballs=("$work/$(npm pack --silent --pack-destination "$work" | tail -1)")
if [[ -n $cuda_library ]]; then
  tarballs+=("$(cd "$work" && node "$root/scripts/pack-cuda.js" --library "$cuda_library" | tail -1)")
fi
echo "tarballs: ${tarballs[*]}"
# (listed to a file first: `tar | grep -q` under pipefail fails when grep stops reading early)
tar -tzf "${tarballs[0]}" > "$work/contents.txt"
grep -q "^package/prebuilds/linux-x64/.*\.node$" "$work/contents.txt" || { echo "no prebuilt binary in the tarball"; exit 1; }
if grep -q "^package/build/" "$work/contents.txt"; then echo "the tarball carries a local build/"; exit 1; fi

# A PATH with every tool of this machine except compilers and build tools (npm still needs sh).
mkdir -p "$work/bin" "$work/app"
for tool in node npm npx; do ln -s "$(command -v $tool)" "$work/bin/$tool"; done
for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
  for f in "$dir"/*; do
    name=${f##*/}
    [[ -e $work/bin/$name ]] && continue
    [[ $name =~ ^(cc|c\+\+|cpp|gcc.*|g\+\+.*|x86_64-linux-gnu-.*|clang.*|ld|ld\..*|as|make|gmake|cmake|ninja|python.*|nvcc)$ ]] && continue
    ln -s "$f" "$work/bin/$name"
  done
done
export PATH=$work/bin
for tool in cc c++ gcc g++ clang make python3 cmake nvcc ld; do
  if command -v $tool > /dev/null; then echo "$tool is still on PATH"; exit 1; fi
done
cd "$work/app"
npm init -y > /dev/null
npm install --no-audit --no-fund "${tarballs[@]}"
[[ ! -d node_modules/attnkit/build ]] || { echo "npm install compiled the addon (node_modules/attnkit/build exists)"; exit 1; }

cat > check.cjs <<'JS'
const { Tensor, attentionSync } = require('attnkit');
const { attentionReference } = require('attnkit/reference');
const r = () => Float32Array.from({ length: 2 * 4 * 33 * 64 }, () => Math.random() * 2 - 1);
const q = Tensor.from(r(), [2, 4, 33, 64]), k = Tensor.from(r(), [2, 4, 33, 64]), v = Tensor.from(r(), [2, 4, 33, 64]);
const got = attentionSync(q, k, v, { causal: true }).toFloat32Array(), ref = attentionReference(q, k, v, { causal: true }).out;
let err = 0, max = 0;
for (let i = 0; i < ref.length; i++) { err = Math.max(err, Math.abs(got[i] - ref[i])); max = Math.max(max, Math.abs(ref[i])); }
if (!(err <= 1e-5 * max)) throw new Error(`require: error ${err / max}`);
console.log(`require('attnkit'): attention matches the float64 reference (${(err / max).toExponential(2)} of max|ref|)`);
JS
cat > check.mjs <<'JS'
import { Tensor, attention, backendInfo } from 'attnkit';
const r = () => Float32Array.from({ length: 1 * 2 * 16 * 32 }, () => Math.random() * 2 - 1);
const out = await attention(Tensor.from(r(), [1, 2, 16, 32]), Tensor.from(r(), [1, 2, 16, 32]), Tensor.from(r(), [1, 2, 16, 32]));
if (!out.toFloat32Array().every(Number.isFinite)) throw new Error('import: output not finite');
console.log(`import 'attnkit': attention ran (${backendInfo().cpu.isa})`);
JS
node check.cjs
node check.mjs
npx attnkit doctor --json > doctor.json
node -e "
const r = require('./doctor.json');
if (r.addon.kind !== 'prebuilt') throw new Error('doctor: the addon is not the prebuilt one: ' + JSON.stringify(r.addon));
console.log('doctor: addon ' + r.addon.path + ', needs ' + JSON.stringify(r.addon.needs));
const cuda = process.argv[1] === 'cuda';
if (cuda && !/node_modules\/@attnkit\/linux-x64-cuda\/libattnkit_cuda.so/.test(r.cuda.library)) throw new Error('doctor: CUDA library not from the package: ' + r.cuda.library);
console.log('doctor: cuda library ' + r.cuda.library + (r.cuda.available ? '' : ' (' + r.cuda.reason + ')'));
" "${cuda_library:+cuda}"
echo "pack check passed"
