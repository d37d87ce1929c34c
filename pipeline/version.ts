/** The package's version, for `atlas --version` and the OpenAPI document. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * package.json is one folder up from the sources (pipeline/) and two from the build
 * (dist/pipeline/): walk up to the first one that is ours rather than hard-code either depth.
 */
export function packageVersion(from = import.meta.dirname): string {
  for (let dir = from; ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'atlas-pipeline' && pkg.version) return pkg.version;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    if (dirname(dir) === dir) throw new Error(`no package.json of atlas-pipeline above ${from}`);
  }
}
