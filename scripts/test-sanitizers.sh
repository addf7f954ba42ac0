#!/usr/bin/env bash
# The CPU test suite against an ASan + UBSan build of the addon, then a LeakSanitizer run of
# 10,000 calls (issue 7). `npm run test:sanitize`; CI runs it after `npm test`. `--build-only`: the
# sanitizer build alone.
#   - build-asan/: the addon with -fsanitize=address,undefined (CMakeLists.txt ATTNKIT_SANITIZE),
#     CPU only; the tests load it through ATTNKIT_ADDON.
#   - Node is not instrumented, so the ASan and UBSan runtimes are preloaded into every node
#     process (jest's workers and the child processes tests start inherit the environment).
#   - Any report fails the run: ASan aborts on its first error, UBSan is built not to recover, and
#     the log is searched for reports besides.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${ATTNKIT_SANITIZE_OUT:-build-asan}
log=$out/sanitizers.log
mkdir -p "$out"
npx cmake-js compile --out "$out" --CDATTNKIT_SANITIZE=address,undefined --CDATTNKIT_CUDA=OFF > "$out/build.log" 2>&1 \
  || { tail -40 "$out/build.log"; exit 1; }
[[ ${1:-} == --build-only ]] && exit 0  # (.ci/run builds it beside npm test, then runs it)
addon=$PWD/$out/Release/attnkit.node
preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
: > "$log"
rm -f "$log".asan.* "$log".ubsan.*
# detect_leaks=0 for the suite: Node's own allocations at exit are not ours (the leak run below
# checks ours). handle_segv=0 / allow_user_segv_handler: V8 keeps its own SIGSEGV handler.
export ASAN_OPTIONS="detect_leaks=0:allow_user_segv_handler=1:handle_segv=0:abort_on_error=1:log_path=$PWD/$log.asan"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$PWD/$log.ubsan"
echo "== CPU test suite, addon $addon under ASan + UBSan"
status=0
# ATTNKIT_SANITIZED: the tests that measure process memory skip (test/helpers/memory-test.js).
ATTNKIT_SANITIZED=1 ATTNKIT_ADDON=$addon LD_PRELOAD=$preload ATTNKIT_LOADTEST_SECONDS=${ATTNKIT_LOADTEST_SECONDS:-10} \
  npx jest --testPathIgnorePatterns 'test/gpu' 2>&1 | tee -a "$log" | grep -E "^(Tests|Test Suites):|✕" || true
grep -q "^Tests:.*failed" "$log" && status=1
grep -q "^Tests:" "$log" || status=1
echo "== LeakSanitizer: 10,000 calls"
# First the canary: a library with a known leak, to show that LSan is watching in this set-up.
gcc -shared -fPIC -o "$out/leak-canary.so" test/fixtures/leak-canary.c
rm -f "$log".canary.*
ASAN_OPTIONS="detect_leaks=1:allow_user_segv_handler=1:handle_segv=0:log_path=$PWD/$log.canary" \
  LD_PRELOAD="$preload:$PWD/$out/leak-canary.so" node -e 0 || true
if grep -q "attnkit_leak_canary" "$log".canary.* 2>/dev/null; then echo "canary leak reported: LeakSanitizer is on"
else echo "LeakSanitizer did not report the canary leak: the leak run below would prove nothing"; status=1; fi
rm -f "$log".lsan.*
ASAN_OPTIONS="detect_leaks=1:allow_user_segv_handler=1:handle_segv=0:log_path=$PWD/$log.lsan" \
  ATTNKIT_ADDON=$addon LD_PRELOAD=$preload node --expose-gc test/fixtures/leak-run.js 10000 2>&1 | tee -a "$log" || status=1
node test/fixtures/leak-report.js "$PWD/$log.lsan" "$addon" || status=1
reports=$(cat "$log".asan.* "$log".ubsan.* 2>/dev/null | grep -cE "ERROR: AddressSanitizer|runtime error:" || true)
echo "sanitizer reports in the suite: $reports"
[[ $reports -eq 0 ]] || { cat "$log".asan.* "$log".ubsan.* 2>/dev/null | head -60; status=1; }
exit $status
