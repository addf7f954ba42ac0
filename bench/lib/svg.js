'use strict';
// A hand-written SVG grouped bar chart: one group per case, one bar per peer (GFLOP/s), a dashed
// horizontal line at the machine's measured FMA peak. No dependencies.

const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];

const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function niceMax(x) {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

const label = (v) => (v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toPrecision(2));

/**
 * groups: [{ name, bars: [{ peer, value, note? }] }]; peak: number (drawn as a line) or null.
 * Returns the SVG document as a string.
 */
function barChart({ title, subtitle = '', yLabel = 'GFLOP/s', groups, peak = null, peakLabel = 'FMA peak' }) {
  const peers = [];
  for (const g of groups) for (const b of g.bars) if (!peers.includes(b.peer)) peers.push(b.peer);
  const color = (peer) => PALETTE[peers.indexOf(peer) % PALETTE.length];

  const barW = 18, gap = 4, groupGap = 40;
  const left = 70, right = 20, top = 70, bottom = 120;
  const groupW = (g) => g.bars.length * (barW + gap) - gap;
  const plotW = Math.max(400, groups.reduce((a, g) => a + groupW(g) + groupGap, groupGap));
  const plotH = 320;
  const width = left + plotW + right;
  const legendRows = Math.ceil(peers.length / 4);
  const height = top + plotH + 70 + legendRows * 18 + 10;

  const maxVal = Math.max(peak || 0, ...groups.flatMap((g) => g.bars.map((b) => b.value || 0)));
  const yMax = niceMax(maxVal * 1.08);
  const y = (v) => top + plotH - (v / yMax) * plotH;

  const parts = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="11">`);
  parts.push(`<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`);
  parts.push(`<text x="${left}" y="24" font-size="15" font-weight="bold">${esc(title)}</text>`);
  if (subtitle) parts.push(`<text x="${left}" y="42" font-size="11" fill="#555">${esc(subtitle)}</text>`);

  // y grid and axis
  const ticks = 5;
  const step = yMax / ticks;
  const tickDecimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) + (Number.isInteger(step / 10 ** Math.floor(Math.log10(step))) ? 0 : 1);
  for (let t = 0; t <= ticks; t++) {
    const v = step * t;
    const yy = y(v).toFixed(1);
    parts.push(`<line x1="${left}" y1="${yy}" x2="${left + plotW}" y2="${yy}" stroke="#e5e5e5"/>`);
    parts.push(`<text x="${left - 6}" y="${yy}" text-anchor="end" dominant-baseline="middle" fill="#333">${v.toFixed(tickDecimals)}</text>`);
  }
  parts.push(`<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle" fill="#333">${esc(yLabel)}</text>`);
  parts.push(`<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#333"/>`);
  parts.push(`<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333"/>`);

  // bars
  let x = left + groupGap;
  for (const g of groups) {
    const w = groupW(g);
    g.bars.forEach((b, i) => {
      const bx = x + i * (barW + gap);
      const v = b.value || 0;
      const by = y(v);
      const h = Math.max(0, top + plotH - by);
      parts.push(`<rect x="${bx}" y="${by.toFixed(1)}" width="${barW}" height="${h.toFixed(1)}" fill="${color(b.peer)}"><title>${esc(`${g.name} - ${b.peer}: ${label(v)} ${yLabel}${b.note ? ` (${b.note})` : ''}`)}</title></rect>`);
      parts.push(`<text transform="translate(${bx + barW / 2 + 3} ${(by - 4).toFixed(1)}) rotate(-90)" font-size="9" fill="#333">${label(v)}</text>`);
    });
    // group label, wrapped on spaces into at most 3 lines
    const words = String(g.name).split(' ');
    const lines = [];
    for (const wd of words) {
      if (lines.length && (lines[lines.length - 1] + ' ' + wd).length <= Math.max(10, Math.floor(w / 5.5))) lines[lines.length - 1] += ' ' + wd;
      else lines.push(wd);
    }
    lines.slice(0, 4).forEach((ln, li) => {
      parts.push(`<text x="${x + w / 2}" y="${top + plotH + 16 + li * 13}" text-anchor="middle" fill="#222">${esc(ln)}</text>`);
    });
    x += w + groupGap;
  }

  // peak line
  if (peak) {
    const py = y(peak).toFixed(1);
    parts.push(`<line x1="${left}" y1="${py}" x2="${left + plotW}" y2="${py}" stroke="#d62728" stroke-width="1.5" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${left + plotW - 4}" y="${py - 5}" text-anchor="end" fill="#d62728">${esc(`${peakLabel} ${label(peak)} ${yLabel}`)}</text>`);
  }

  // legend
  const ly = top + plotH + 70;
  peers.forEach((p, i) => {
    const lx = left + (i % 4) * 200;
    const yy = ly + Math.floor(i / 4) * 18;
    parts.push(`<rect x="${lx}" y="${yy - 9}" width="12" height="12" fill="${color(p)}"/>`);
    parts.push(`<text x="${lx + 18}" y="${yy + 1}" fill="#222">${esc(p)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

module.exports = { barChart };
