import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, existsSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openDatabase } from '../store/connection.js';
import { sqliteTime } from '../store/sqlite-time.js';
import { EXPORT_FORMATS, exportTrail, type ExportFormat } from '../audit/export-trail.js';
import { CliError } from './cli-error.js';
import { configOf, type ConfigSource } from './config-source.js';
import { VERSION } from '../config/version.js';

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000 } as const;
/** Lines are gathered into chunks of about this size: one write per row would cost more than the row. */
const CHUNK_CHARS = 64 * 1024;

/**
 * `audit export [--since T] [--until T] [--format jsonl|csv] [--out FILE]`:
 * a segment of each hash chain with what an auditor needs to verify it
 * without govgate (tools/verify_export.py). Returns the exit code.
 */
export async function auditExportCommand(source: ConfigSource, args: string[], out: NodeJS.WritableStream): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { since: { type: 'string' }, until: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 0) throw new CliError(`audit export takes no arguments, got "${positionals[0]}"`, 2);
  const format = values.format ?? 'jsonl';
  if (!EXPORT_FORMATS.includes(format as ExportFormat)) throw new CliError(`--format must be jsonl or csv, got "${format}"`, 2);
  if (values.out === '') throw new CliError('--out needs a FILE', 2);
  const now = new Date();
  const since = values.since === undefined ? null : parseBound('--since', values.since, now);
  const until = values.until === undefined ? null : parseBound('--until', values.until, now);
  if (since && until && since >= until) throw new CliError(`--since (${since} UTC) must be before --until (${until} UTC)`, 2);

  const config = configOf(source);
  if (!existsSync(config.audit.path)) throw new CliError(`no audit database at ${config.audit.path}`);
  const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, readonly: true });
  try {
    const lines = exportTrail(db, { format: format as ExportFormat, since, until, generatedAt: now, version: VERSION });
    if (values.out === undefined) await writeToStream(lines, out);
    else writeAtomically(values.out, lines);
  } finally {
    db.close();
  }
  return 0;
}

/**
 * `--since`/`--until` as `created_at`'s own text: an ISO date or time in UTC
 * (a `Z` is allowed, other offsets are not, as every time in the trail is
 * UTC), or an age before now such as 30d, 12h, 15m.
 */
function parseBound(flag: string, text: string, now: Date): string {
  const age = /^(\d{1,6})([dhm])$/.exec(text);
  if (age && Number(age[1]) > 0) return sqliteTime(new Date(now.getTime() - Number(age[1]) * UNIT_MS[age[2] as keyof typeof UNIT_MS]));
  const iso = /^(\d{4}-\d{2}-\d{2})(?:[T ]([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(\.\d{1,3})?)?)?Z?$/.exec(text);
  if (iso) {
    const [, day, hour = '00', minute = '00', second = '00', fraction = ''] = iso;
    const date = new Date(`${day}T${hour}:${minute}:${second}${fraction}Z`);
    // Date rolls 2025-02-30 over into March rather than refusing it.
    if (!Number.isNaN(date.getTime()) && date.toISOString().startsWith(day!)) return sqliteTime(date);
  }
  throw new CliError(`${flag} must be an ISO date or time in UTC (2025-01-31, 2025-01-31T08:00:00Z) or an age such as 30d, 12h or 15m, got "${text}"`, 2);
}

function* chunks(lines: Iterable<string>): Generator<string, void, undefined> {
  let chunk = '';
  for (const line of lines) {
    chunk += line;
    if (chunk.length >= CHUNK_CHARS) {
      yield chunk;
      chunk = '';
    }
  }
  if (chunk) yield chunk;
}

/** Waits for a full pipe to drain, so a slow reader holds the export back instead of it piling up in memory. */
async function writeToStream(lines: Iterable<string>, out: NodeJS.WritableStream): Promise<void> {
  for (const chunk of chunks(lines)) {
    if (!out.write(chunk)) await once(out, 'drain');
  }
}

/**
 * Written beside FILE and renamed over it once complete and on disk, so FILE
 * is never a partial export that would fail verification for the wrong
 * reason; mode 0600 because the trail names customers and keys.
 */
function writeAtomically(file: string, lines: Iterable<string>): void {
  const target = path.resolve(file);
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(temp, 'wx', 0o600);
  } catch (err) {
    throw new CliError(`cannot write ${file}: ${(err as Error).message}`);
  }
  try {
    try {
      for (const chunk of chunks(lines)) writeSync(fd, chunk);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(temp, target);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
}
