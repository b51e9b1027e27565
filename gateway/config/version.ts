import { readFileSync } from 'node:fs';

/** The package version, read once from package.json beside the sources or the build. */
function readVersion(): string {
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      return (JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      continue;
    }
  }
  return 'unknown';
}

export const VERSION = readVersion();
