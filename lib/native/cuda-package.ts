import * as fs from 'fs';
import * as path from 'path';

/** The optional package that carries libattnkit_cuda.so for this platform. */
export const CUDA_PACKAGE = `@attnkit/${process.platform}-${process.arch}-cuda`;

export interface CudaPackageLookup {
  /** The library file, when a package of attnkit's own version is installed. */
  libraryPath?: string;
  /** What the lookup found, in words (for the reason when no CUDA library loads). */
  note: string;
}

/**
 * Finds the optional CUDA package beside attnkit (resolved from attnkit's own folder, as npm
 * installs an optional peer), and takes it only at exactly attnkit's version: the C ABI is
 * versioned too, but kernels and addon are built and tested as one release.
 */
export function findCudaPackage(packageRoot: string, version: string): CudaPackageLookup {
  let manifest: string;
  try {
    manifest = require.resolve(`${CUDA_PACKAGE}/package.json`, { paths: [packageRoot] });
  } catch {
    return { note: `${CUDA_PACKAGE} is not installed` };
  }
  let found: string | undefined;
  try {
    found = (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version?: string }).version;
  } catch (e) {
    return { note: `${CUDA_PACKAGE}'s package.json (${manifest}) is unreadable: ${e instanceof Error ? e.message : String(e)}` };
  }
  if (found !== version) {
    return {
      note: `${CUDA_PACKAGE} ${String(found)} is installed (${path.dirname(manifest)}), but attnkit ${version} ` +
        `needs the same version: npm install ${CUDA_PACKAGE}@${version}`,
    };
  }
  return { libraryPath: path.join(path.dirname(manifest), 'libattnkit_cuda.so'), note: `${CUDA_PACKAGE} ${found} at ${path.dirname(manifest)}` };
}
