import { native } from './native/binding';

export interface BackendInfo {
  version: string;
  cpu: { isa: string; threads: number };
  cuda: { available: boolean; reason?: string; devices?: { name: string; cc: string; memoryBytes: number }[] };
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
const version: string = require('../package.json').version;

export function backendInfo(): BackendInfo {
  const cpu = native().cpuInfo();
  return {
    version,
    cpu: { isa: cpu.isa, threads: cpu.threads },
    cuda: { available: false, reason: 'this build of attnkit has no CUDA library (attnkit_cuda); CPU only' },
  };
}

/** Sets the size of attnkit's own CPU thread pool (default: the number of cores). */
export function setNumThreads(n: number): void {
  native().setNumThreads(n);
}
