'use strict';
// `memoryTest`: jest's `test` for tests that measure process memory (RSS, peak RSS, reclaimed
// bytes), `test.skip` under scripts/test-sanitizers.sh (ATTNKIT_SANITIZED): ASan replaces the
// allocator, keeps freed blocks in quarantine and adds shadow memory (1/8 of what is touched), so
// those figures measure ASan there. Everything else in the suite runs under the sanitizers.
module.exports = { memoryTest: process.env.ATTNKIT_SANITIZED ? test.skip : test };
