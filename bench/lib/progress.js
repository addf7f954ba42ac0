'use strict';
// One progress line on stderr: rewritten in place on a terminal, one line per update otherwise
// (non-terminal output is throttled so logs stay short).

function createProgress({ total, stream = process.stderr, quiet = false } = {}) {
  const tty = !!stream.isTTY;
  const t0 = Date.now();
  let step = 0, label = '', lastLen = 0, lastText = '';

  const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(0)}s`;
  // `key` is the text without the clock: a non-terminal gets a new line only when it changes.
  function write(key, detail = '') {
    if (quiet) return;
    const text = `${key}${detail && tty ? ` ${detail}` : ''} (${elapsed()})`;
    if (tty) {
      const pad = lastLen > text.length ? ' '.repeat(lastLen - text.length) : '';
      stream.write(`\r${text}${pad}`);
      lastLen = text.length;
    } else if (key !== lastText) {
      stream.write(`${text}\n`);
    }
    lastText = key;
  }

  return {
    /** Starts item `label` (counts steps). */
    start(name) {
      step += 1;
      label = name;
      write(`[${step}/${total}] ${label}`);
    },
    /** Updates what the current item is doing, e.g. 'ort...'; `detail` (e.g. a round counter) shows on a terminal only. */
    update(what, detail = '') {
      write(`[${step}/${total}] ${label}: ${what}`, detail);
    },
    /** A message that must stay visible (warnings). */
    note(msg) {
      if (tty && lastLen) { stream.write(`\r${' '.repeat(lastLen)}\r`); lastLen = 0; }
      stream.write(`${msg}\n`);
    },
    done() {
      if (quiet) return;
      if (tty && lastLen) stream.write(`\r${' '.repeat(lastLen)}\r`);
      stream.write(`done in ${elapsed()}\n`);
    },
  };
}

module.exports = { createProgress };
