import { native, CudaInfo } from './native/binding';
import { cudaInfo } from './device';

export interface BackendInfo {
  version: string;
  cpu: { isa: string; threads: number };
  /** available, else the reason (no library, no driver, no device, no kernel image for this GPU);
   *  devices: [{ name, cc: '9.0', memoryBytes, multiprocessors, kernelImage }]; buildInfo: the library's build. */
  cuda: CudaInfo;
}

// eslint-disable-next-line @typescript-eslint/no-var-requires
const version: string = require('../package.json').version;

export function backendInfo(): BackendInfo {
  const cpu = native().cpuInfo();
  return {
    version,
    cpu: { isa: cpu.isa, threads: cpu.threads },
    cuda: JSON.parse(JSON.stringify(cudaInfo())) as CudaInfo, // a fresh copy each call
  };
}

/** Sets the size of attnkit's own CPU thread pool (default: the number of cores). */
export function setNumThreads(n: number): void {
  native().setNumThreads(n);
}
