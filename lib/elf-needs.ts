import * as fs from 'fs';

// The symbol versions a Linux shared object needs from each library it links (its ELF
// .gnu.version_r section), e.g. { 'libc.so.6': 'GLIBC_2.34', 'libstdc++.so.6': 'GLIBCXX_3.4.30' }:
// the oldest glibc / libstdc++ a prebuilt addon runs on. Read from the file, no tools needed.

const SHT_GNU_VERNEED = 0x6ffffffe;

function versionKey(v: string): number[] {
  return (v.split('_').pop() ?? '').split('.').map(Number);
}

function newer(a: string, b: string): boolean {
  const x = versionKey(a), y = versionKey(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) > (y[i] ?? 0);
  }
  return false;
}

/** The newest version each needed library must provide; undefined if the file is not a 64-bit little-endian ELF. */
export function elfVersionNeeds(file: string): Record<string, string> | undefined {
  const b = fs.readFileSync(file);
  if (b.length < 64 || b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1) return undefined;
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a), shnum = b.readUInt16LE(0x3c);
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return { type: b.readUInt32LE(o + 4), offset: Number(b.readBigUInt64LE(o + 0x18)), link: b.readUInt32LE(o + 0x28), info: b.readUInt32LE(o + 0x2c) };
  };
  const cstr = (at: number) => b.toString('latin1', at, b.indexOf(0, at));
  const needs: Record<string, string> = {};
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (s.type !== SHT_GNU_VERNEED) continue;
    const strings = section(s.link).offset;
    // s.info Verneed entries: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32;
    // each with vn_cnt Vernaux entries: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32.
    for (let n = 0, at = s.offset; n < s.info; n++) {
      const count = b.readUInt16LE(at + 2), lib = cstr(strings + b.readUInt32LE(at + 4));
      for (let k = 0, aux = at + b.readUInt32LE(at + 8); k < count; k++) {
        const name = cstr(strings + b.readUInt32LE(aux + 8));
        if (/_\d/.test(name) && (needs[lib] === undefined || newer(name, needs[lib]))) needs[lib] = name;
        aux += b.readUInt32LE(aux + 12);
      }
      at += b.readUInt32LE(at + 12);
    }
  }
  return needs;
}
