import * as os from 'os';
import * as path from 'path';
import { native, addonPath, CudaInfo } from './native/binding';
import { CUDA_PACKAGE } from './native/cuda-package';
import { backendInfo } from './info';
import { elfVersionNeeds } from './elf-needs';

// `npx attnkit doctor`: what this machine and this install give attnkit, and what to do where
// something is missing. Read-only; it loads the addon and (through it) the CUDA library.

export interface DoctorReport {
  attnkit: string;
  platform: { os: string; arch: string; glibc?: string; cores: number };
  node: { version: string; napi: number; napiNeeded: number };
  /** needs: the newest symbol version the addon file needs from each library (glibc, libstdc++). */
  addon: { path?: string; kind?: 'local build' | 'prebuilt' | 'ATTNKIT_ADDON'; needs?: Record<string, string>; error?: string };
  cpu?: { isa: string; bestIsa: string; threads: number };
  cuda?: CudaInfo & { library: string };
  advice: string[];
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
const version: string = require('../package.json').version;
const NAPI_NEEDED = 8;

function glibcVersion(): string | undefined {
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime;
}

function cudaAdvice(c: CudaInfo): string[] {
  if (c.available) {
    const missing = (c.devices ?? []).filter((d) => !d.kernelImage);
    return missing.map((d) => `CUDA: the library has no kernels for ${d.name} (compute capability ${d.cc}): rebuild it ` +
      `for that GPU (npx cmake-js compile --CDATTNKIT_CUDA=ON --CDATTNKIT_CUDA_GENCODE="arch=compute_XX,code=sm_XX" in the attnkit folder)`);
  }
  const r = c.reason ?? '';
  if (/not found/i.test(r)) {
    return [`CUDA: no CUDA library. GPU tensors need libattnkit_cuda.so: install ${CUDA_PACKAGE}@${version} ` +
      '(prebuilt, the same version as attnkit), or build it with `npx attnkit build --cuda` (needs nvcc 12+), ' +
      'or point ATTNKIT_CUDA_LIB at a built copy. CPU attention works without it.'];
  }
  if (/cudaErrorNoDevice|no CUDA-capable/i.test(r)) {
    return ['CUDA: no NVIDIA GPU is visible to this process (check CUDA_VISIBLE_DEVICES and that the GPU is present).'];
  }
  if (/cudaErrorInsufficientDriver|insufficient/i.test(r)) {
    return ['CUDA: the NVIDIA driver is missing, or older than the CUDA runtime the library was built with (the ' +
      '"cuda library" line names it): install a driver that supports that CUDA version, or keep to the CPU.'];
  }
  return [`CUDA: unavailable (${r}).`];
}

export function doctorReport(): DoctorReport {
  const addon = addonPath();
  const report: DoctorReport = {
    attnkit: version,
    platform: { os: process.platform, arch: process.arch, glibc: glibcVersion(), cores: os.availableParallelism() },
    node: { version: process.version, napi: Number(process.versions.napi ?? 0), napiNeeded: NAPI_NEEDED },
    addon: addon.path
      ? { path: addon.path, kind: process.env.ATTNKIT_ADDON ? 'ATTNKIT_ADDON' : addon.path.includes(`${path.sep}prebuilds${path.sep}`) ? 'prebuilt' : 'local build' }
      : { error: addon.error },
    advice: [],
  };
  if (report.node.napi < NAPI_NEEDED) report.advice.push(`Node: N-API ${report.node.napi} is too old; attnkit needs ${NAPI_NEEDED} (Node >= 20).`);
  if (addon.path && process.platform === 'linux') {
    try { report.addon.needs = elfVersionNeeds(addon.path); } catch { /* unreadable: the load below says why */ }
  }
  if (!addon.path) {
    report.advice.push('Addon: none found for this platform: build it from source with `npm rebuild attnkit` (needs python3, make and a C++17 compiler).');
    return report;
  }
  try {
    const cpu = native().cpuInfo();
    report.cpu = { isa: cpu.isa, bestIsa: cpu.bestIsa, threads: cpu.threads };
    if (cpu.isa !== cpu.bestIsa) {
      report.advice.push(`CPU: kernels for ${cpu.isa} are in use but this CPU has ${cpu.bestIsa}` +
        (process.env.ATTNKIT_ISA ? ` (ATTNKIT_ISA=${process.env.ATTNKIT_ISA} caps it)` : '') + '.');
    }
  } catch (e) {
    report.addon.error = e instanceof Error ? e.message : String(e);
    report.advice.push('Addon: it was found but does not load; see the error above.');
    return report;
  }
  const c = backendInfo().cuda;  // (a copy of the library's state)
  report.cuda = { ...c, library: (c.libraryPath ?? '(none)') + (process.env.ATTNKIT_CUDA_LIB ? ' (ATTNKIT_CUDA_LIB)' : '') };
  report.advice.push(...cudaAdvice(c));
  return report;
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** The report as the lines `npx attnkit doctor` prints. */
export function formatDoctor(r: DoctorReport): string {
  const lines: string[] = [`attnkit ${r.attnkit} doctor`];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(13)}${v}`);
  row('platform', `${r.platform.os}-${r.platform.arch}${r.platform.glibc ? `, glibc ${r.platform.glibc}` : ''}, ${r.platform.cores} cores`);
  row('node', `${r.node.version}, N-API ${r.node.napi} (attnkit needs ${r.node.napiNeeded})`);
  row('addon', r.addon.path ? `${r.addon.path} (${r.addon.kind})` : `not found: ${r.addon.error}`);
  if (r.addon.needs) row('', `needs ${Object.entries(r.addon.needs).map(([lib, v]) => `${v} (${lib})`).join(', ')}`);
  if (r.addon.path && r.addon.error) row('', `does not load: ${r.addon.error}`);
  if (r.cpu) row('cpu', `kernels ${r.cpu.isa} (best for this CPU: ${r.cpu.bestIsa}), ${r.cpu.threads} threads`);
  if (r.cuda) {
    row('cuda library', r.cuda.library + (r.cuda.buildInfo ? `: ${r.cuda.buildInfo}` : ''));
    if (r.cuda.available) {
      const devices = r.cuda.devices ?? [];
      row('cuda', `available, ${devices.length} device${devices.length === 1 ? '' : 's'}`);
      devices.forEach((d, i) => row('', `cuda:${i} ${d.name}, compute capability ${d.cc}, ${gib(d.memoryBytes)}, ` +
        `${d.multiprocessors} SMs, kernels for it: ${d.kernelImage ? 'yes' : 'no'}`));
    } else {
      row('cuda', `unavailable: ${r.cuda.reason}`);
    }
  }
  lines.push(r.advice.length ? 'what to do:' : 'everything attnkit can use here works.');
  for (const a of r.advice) lines.push(`  - ${a}`);
  return lines.join('\n');
}
