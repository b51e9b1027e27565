import { execFileSync, spawnSync } from 'node:child_process';

// The gateway may hold a write lock on the same file; wait rather than fail with SQLITE_BUSY.
const BUSY_TIMEOUT_ARGS = ['-cmd', '.timeout 5000'];
const MAX_BUFFER = 64 * 1024 * 1024;

/**
 * `sqlite3 -json` prints one JSON array per result-producing statement, so a
 * multi-statement script yields several arrays back to back; split them at depth 0.
 */
function splitJsonArrays(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = -1;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (ch === '\\') escaped = true;
      else if (ch === '"') inString = false;
      continue;
    }
    if (ch === '"') inString = true;
    else if (ch === '[' || ch === '{') {
      if (depth === 0) start = i;
      depth++;
    } else if (ch === ']' || ch === '}') {
      depth--;
      if (depth === 0 && start !== -1) {
        parts.push(text.slice(start, i + 1));
        start = -1;
      }
    }
  }
  return parts;
}

export function sqliteJson<T = Record<string, unknown>>(dbPath: string, sql: string): T[] {
  let stdout: string;
  try {
    stdout = execFileSync('sqlite3', [...BUSY_TIMEOUT_ARGS, '-json', '-bail', dbPath, sql], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: MAX_BUFFER,
    });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string | Buffer; status?: number | null };
    const stderr = e.stderr === undefined ? '' : String(e.stderr).trim();
    throw new Error(
      `sqlite3 failed (status ${e.status ?? e.code ?? 'unknown'}) on ${dbPath}: ${stderr || e.message}\nSQL: ${sql}`,
      { cause: err },
    );
  }
  const trimmed = stdout.trim();
  if (trimmed === '') return [];
  try {
    return JSON.parse(trimmed) as T[];
  } catch {
    return splitJsonArrays(trimmed).flatMap((part) => JSON.parse(part) as T[]);
  }
}

export function sqliteRaw(dbPath: string, sql: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('sqlite3', [...BUSY_TIMEOUT_ARGS, dbPath, sql], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: MAX_BUFFER,
  });
  return {
    // null status means killed by signal or failed to spawn; report it as a failure, not success.
    status: r.status ?? 1,
    stdout: r.stdout ?? '',
    stderr: (r.stderr ?? '') + (r.error ? String(r.error) : ''),
  };
}
