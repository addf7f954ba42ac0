'use strict';
// Plain-text tables for the terminal (and for pasting into notes): columns padded to width,
// numbers right-aligned, an optional separator row between groups.

/**
 * columns: [{ key, title, align?: 'left' | 'right', format?: (value, row) => string }]
 * rows: objects, or the string '-' for a separator line.
 */
function formatTable(columns, rows) {
  const cell = (c, row) => {
    const v = row[c.key];
    if (c.format) return c.format(v, row);
    return v === undefined || v === null ? '' : String(v);
  };
  const body = rows.map((row) => (row === '-' ? '-' : columns.map((c) => cell(c, row))));
  const widths = columns.map((c, i) =>
    Math.max(c.title.length, ...body.filter((r) => r !== '-').map((r) => r[i].length)));
  const pad = (s, i) => {
    const w = widths[i];
    return (columns[i].align || 'right') === 'left' ? s.padEnd(w) : s.padStart(w);
  };
  const line = widths.map((w) => '-'.repeat(w)).join('-+-');
  const out = [columns.map((c, i) => pad(c.title, i)).join(' | '), line];
  for (const r of body) out.push(r === '-' ? line : r.map(pad).join(' | '));
  return out.map((l) => l.replace(/\s+$/, '')).join('\n');
}

/** Number formatting helpers: fixed significant figures without exponent noise. */
function fmt(x, digits = 3) {
  if (x === undefined || x === null || Number.isNaN(x)) return '-';
  if (!Number.isFinite(x)) return String(x);
  const a = Math.abs(x);
  if (a === 0) return '0';
  if (a >= 10 ** digits) return x.toFixed(0);
  const decimals = Math.max(0, digits - 1 - Math.floor(Math.log10(a)));
  return x.toFixed(Math.min(decimals, 6));
}

const fmtPct = (x) => (x === undefined || x === null || Number.isNaN(x) ? '-' : `${(100 * x).toFixed(1)}%`);
const fmtErr = (x) => (x === undefined || x === null ? '-' : Number.isNaN(x) ? 'NaN' : x.toExponential(1));
const fmtRatio = (x) => (x === undefined || x === null || Number.isNaN(x) ? '-' : `${fmt(x, 3)}x`);

module.exports = { formatTable, fmt, fmtPct, fmtErr, fmtRatio };
