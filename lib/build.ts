// `npx attnkit build [--cuda]`: rebuilds the native parts from the sources the package ships
// (native/, CMakeLists.txt, binding.gyp) into <attnkit>/build/Release, where the loader looks
// first (a local build is preferred to prebuilds/ and to the optional CUDA package).
// CPU: cmake-js when cmake is on PATH, else node-gyp (binding.gyp; CPU only). --cuda: cmake-js with
// -DATTNKIT_CUDA=ON (needs cmake and nvcc). cmake-js and node-gyp come through npx: the local copy
// when there is one, else from the npm registry (this command is the one place that may fetch).
import { spawnSync } from 'child_process';
import * as path from 'path';

export interface BuildOptions {
  cuda: boolean;
  /** Extra -gencode entries for the CUDA library (default: CMakeLists.txt's list). */
  gencode?: string;
}

const packageRoot = path.join(__dirname, '..');

function onPath(command: string, args: string[]): boolean {
  const r = spawnSync(command, args, { stdio: 'ignore' });
  return r.status === 0;
}

function nvccFound(): boolean {
  return onPath('nvcc', ['--version']) || onPath('/usr/local/cuda/bin/nvcc', ['--version']);
}

/** The command line the build runs, or why it cannot (a message saying what to install). */
export function buildCommand(opts: BuildOptions): { command: string; args: string[] } | { error: string } {
  const cmake = onPath('cmake', ['--version']);
  if (opts.cuda) {
    if (!cmake) return { error: 'attnkit build --cuda needs cmake (3.18+) on PATH' };
    if (!nvccFound()) return { error: 'attnkit build --cuda needs the CUDA toolkit (nvcc 12+) on PATH or in /usr/local/cuda' };
    const args = ['--yes', 'cmake-js@^8', 'compile', '--CDATTNKIT_CUDA=ON'];
    if (opts.gencode) args.push(`--CDATTNKIT_CUDA_GENCODE=${opts.gencode}`);
    return { command: 'npx', args };
  }
  if (cmake) return { command: 'npx', args: ['--yes', 'cmake-js@^8', 'compile', '--CDATTNKIT_CUDA=OFF'] };
  return { command: 'npx', args: ['--yes', 'node-gyp@^11', 'rebuild'] };
}

/** Runs the build in attnkit's folder with its output on this terminal; returns the exit code. */
export function buildFromSource(opts: BuildOptions): number {
  const plan = buildCommand(opts);
  if ('error' in plan) {
    console.error(plan.error);
    return 1;
  }
  console.log(`attnkit build: ${plan.command} ${plan.args.join(' ')} (in ${packageRoot})`);
  const r = spawnSync(plan.command, plan.args, { cwd: packageRoot, stdio: 'inherit' });
  if (r.error) console.error(`attnkit build: could not run ${plan.command}: ${r.error.message}`);
  return r.status ?? 1;
}
