import { CHAIN_COLUMNS, CHAINS, GENESIS_HASH, type ChainName } from '../store/chain.js';
import type { Db } from '../store/connection.js';
import type { ChainHead } from './verify-chain.js';

/** The first line's `format`: bumped whenever a record's shape changes, so tools/verify_export.py can refuse what it does not know. */
export const EXPORT_FORMAT = 'govgate-audit-export-v1';

export type ExportFormat = 'jsonl' | 'csv';
export const EXPORT_FORMATS: readonly ExportFormat[] = ['jsonl', 'csv'];

/** How CSV writes NULL, as PostgreSQL's COPY can: unquoted. A text that is literally `\N` is written quoted, so the two stay apart. */
export const CSV_NULL = '\\N';

export interface ExportOptions {
  readonly format: ExportFormat;
  /** Rows created at or after this, in `created_at`'s own text form (sqliteTime); null for the start of each chain. */
  readonly since: string | null;
  /** Rows created before this; null for the end of each chain. */
  readonly until: string | null;
  readonly generatedAt: Date;
  readonly version: string;
}

/**
 * What a segment's first row must link to. `genesis` and `anchor` say the
 * segment begins where the chain does; `row` names the row just before it,
 * which is the head an export of the time before would have ended with.
 */
export type SegmentStart =
  | { readonly kind: 'genesis'; readonly prev_hash: string }
  | { readonly kind: 'anchor'; readonly prev_hash: string; readonly anchor: number; readonly rowid: number }
  | { readonly kind: 'row'; readonly prev_hash: string | null; readonly rowid: number; readonly id: string | null; readonly created_at: string | null };

type RecordKind = 'header' | 'segment' | 'anchor' | 'policy_version' | 'head' | 'trailer';
type Row = Readonly<Record<string, unknown>> & { readonly row_id: number };

/** Writes one record as the format's text, line ending included. */
interface Renderer {
  readonly preamble: string;
  record(kind: RecordKind, chain: ChainName | null, data: Readonly<Record<string, unknown>>): string;
  row(chain: ChainName, row: Row): string;
}

/**
 * The export as lines of text, generated while it is read: an export may hold
 * millions of rows, and only one is in memory at a time. Everything is read in
 * one read transaction, so the segments, anchors, policy texts and heads come
 * from the same snapshot while the gateway keeps appending (a WAL reader never
 * blocks it; it only keeps the WAL from being reset until the export ends).
 * Abandoning the generator ends the transaction.
 */
export function* exportTrail(db: Db, options: ExportOptions): Generator<string, void, undefined> {
  const render = options.format === 'csv' ? csvRenderer() : jsonlRenderer();
  yield render.preamble;
  yield render.record('header', null, {
    format: EXPORT_FORMAT,
    govgate_version: options.version,
    generated_at: options.generatedAt.toISOString(),
    since: options.since,
    until: options.until,
  });
  db.exec('BEGIN');
  try {
    const rows = {} as Record<ChainName, number>;
    const heads = {} as Record<ChainName, ChainHead | null>;
    // Collected while the decisions stream past: a handful of texts, not a second pass over millions of rows.
    const policies = new Set<string>();
    for (const chain of CHAINS) {
      const range = segmentRange(db, chain, options);
      yield render.record('segment', chain, { start: range ? segmentStart(db, chain, range.first) : null });
      const idColumn = CHAIN_COLUMNS[chain][0]![0];
      let last: Row | null = null;
      let count = 0;
      if (range) {
        for (const row of selectRows(db, chain).iterate(range.first, range.last) as IterableIterator<Row>) {
          if (chain === 'usagelog' && typeof row.policy_hash === 'string') policies.add(row.policy_hash);
          yield render.row(chain, row);
          last = row;
          count++;
        }
      }
      rows[chain] = count;
      heads[chain] = last ? { rowid: last.row_id, id: String(last[idColumn]), hash: String(last.hash), created_at: String(last.created_at) } : null;
    }
    let anchors = 0;
    const allAnchors = db.prepare('SELECT id, chain, through_rowid, through_hash, through_created_at, rows_deleted, created_at FROM audit_anchor ORDER BY id');
    for (const { chain, ...anchor } of allAnchors.iterate() as IterableIterator<Readonly<Record<string, unknown>> & { chain: ChainName }>) {
      yield render.record('anchor', chain, anchor);
      anchors++;
    }
    let policyVersions = 0;
    const policyText = db.prepare('SELECT hash, loaded_at, path, text FROM policy_version WHERE hash = ?');
    for (const hash of policies) {
      const version = policyText.get(hash) as Readonly<Record<string, unknown>> | undefined;
      // A missing text is left for the verifier to name, with the row that needs it.
      if (!version) continue;
      yield render.record('policy_version', null, version);
      policyVersions++;
    }
    for (const chain of CHAINS) yield render.record('head', chain, { rows: rows[chain], head: heads[chain] });
    yield render.record('trailer', null, { rows, anchors, policy_versions: policyVersions });
  } finally {
    db.exec('COMMIT');
  }
}

/**
 * The rowids of the first and last row created in [since, until). The export
 * holds every row between them, whatever its `created_at`: a decision is
 * stamped when it is admitted but gets its rowid when its group commit lands,
 * so time and rowid order differ by milliseconds at the edges, and picking
 * rows by time alone would leave holes that no verifier could tell from
 * deletions. A contiguous run of the chain lets every link be checked; a few
 * rows just outside the window may come along.
 */
function segmentRange(db: Db, chain: ChainName, { since, until }: ExportOptions): { first: number; last: number } | null {
  const where = [since === null ? null : 'created_at >= @since', until === null ? null : 'created_at < @until'].filter((c) => c !== null);
  const sql = `SELECT min(rowid) AS first, max(rowid) AS last FROM ${chain}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`;
  const params = { ...(since === null ? {} : { since }), ...(until === null ? {} : { until }) };
  const range = db.prepare(sql).get(params) as { first: number | null; last: number | null };
  return range.first === null || range.last === null ? null : { first: range.first, last: range.last };
}

/**
 * Read from the file, never copied from the first row's own `prev_hash`, so
 * a row whose link was broken in the database fails in the export too.
 */
function segmentStart(db: Db, chain: ChainName, firstRowid: number): SegmentStart {
  const idColumn = CHAIN_COLUMNS[chain][0]![0];
  const before = db.prepare(`SELECT rowid AS row_id, ${idColumn} AS id, hash, created_at FROM ${chain} WHERE rowid < ? ORDER BY rowid DESC LIMIT 1`).get(firstRowid) as
    | { row_id: number; id: unknown; hash: unknown; created_at: unknown }
    | undefined;
  if (before) {
    return {
      kind: 'row', rowid: before.row_id, prev_hash: textOrNull(before.hash), id: textOrNull(before.id), created_at: textOrNull(before.created_at),
    };
  }
  // The control log is never pruned, so it has no anchors and always starts at the genesis hash.
  const anchor = db.prepare('SELECT id, through_rowid, through_hash FROM audit_anchor WHERE chain = ? ORDER BY id DESC LIMIT 1').get(chain) as
    | { id: number; through_rowid: number; through_hash: string }
    | undefined;
  return anchor ? { kind: 'anchor', prev_hash: anchor.through_hash, anchor: anchor.id, rowid: anchor.through_rowid } : { kind: 'genesis', prev_hash: GENESIS_HASH };
}

function textOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : String(value);
}

function selectRows(db: Db, chain: ChainName) {
  const columns = CHAIN_COLUMNS[chain].map(([name]) => name).join(', ');
  return db.prepare(`SELECT rowid AS row_id, ${columns}, prev_hash, hash FROM ${chain} WHERE rowid BETWEEN ? AND ? ORDER BY rowid`);
}

/** A row's columns in the order their hash covers them, then the chain's own two. */
function rowColumns(chain: ChainName): string[] {
  return [...CHAIN_COLUMNS[chain].map(([name]) => name), 'prev_hash', 'hash'];
}

/**
 * A number as JSON (and CSV) text that Python's float() and json read back as
 * the same double: JavaScript's shortest round-trip form, except for the
 * infinities SQLite can store, which JSON has no word for; 1e999 overflows to
 * them in every reader. (SQLite hands -0.0 back as 0, so no sign is lost there.)
 */
function numberText(value: number): string {
  if (value === Infinity) return '1e999';
  if (value === -Infinity) return '-1e999';
  return String(value);
}

/**
 * SQLite hands back TEXT, INTEGER and REAL as strings and numbers; anything
 * else (a BLOB) can only come from an edit, and is written the way store/chain.ts
 * renders it, so it fails its hash in the export as it does in the file.
 */
function scalarText(value: unknown): string {
  return typeof value === 'number' ? numberText(value) : String(value);
}

function jsonlRenderer(): Renderer {
  const prefixes = Object.fromEntries(CHAINS.map((chain) => [chain, `{"record":"row","chain":${JSON.stringify(chain)},"rowid":`])) as Record<ChainName, string>;
  const keys = Object.fromEntries(CHAINS.map((chain) => [chain, rowColumns(chain).map((name) => [name, `,${JSON.stringify(name)}:`] as const)])) as Record<ChainName, (readonly [string, string])[]>;
  return {
    preamble: '',
    record: (kind, chain, data) => `${JSON.stringify({ record: kind, ...(chain ? { chain } : {}), ...data })}\n`,
    // Written by hand rather than by JSON.stringify, which would turn an infinity into null.
    row(chain, row) {
      let line = prefixes[chain] + String(row.row_id);
      for (const [name, key] of keys[chain]) {
        const value = row[name];
        line += key + (value === null || value === undefined ? 'null' : typeof value === 'number' ? numberText(value) : JSON.stringify(scalarText(value)));
      }
      return `${line}}\n`;
    },
  };
}

/**
 * One RFC 4180 table: a row fills its chain's columns and leaves the others
 * NULL; every other record puts its JSON in `data`. No CSV library is among
 * the dependencies, and quoting is all RFC 4180 asks for.
 */
function csvRenderer(): Renderer {
  const union = [...new Set(CHAINS.flatMap((chain) => CHAIN_COLUMNS[chain].map(([name]) => name)))];
  const header = ['record', 'chain', 'rowid', ...union, 'prev_hash', 'hash', 'data'];
  const position = new Map(header.map((name, i) => [name, i]));
  const line = (fields: readonly string[]) => `${fields.join(',')}\r\n`;
  const blank = () => header.map(() => CSV_NULL);
  return {
    preamble: line(header),
    record(kind, chain, data) {
      const fields = blank();
      fields[0] = kind;
      if (chain) fields[1] = chain;
      fields[header.length - 1] = csvText(JSON.stringify(data));
      return line(fields);
    },
    row(chain, row) {
      const fields = blank();
      fields[0] = 'row';
      fields[1] = chain;
      fields[2] = String(row.row_id);
      for (const name of rowColumns(chain)) {
        const value = row[name];
        if (value !== null && value !== undefined) fields[position.get(name)!] = typeof value === 'number' ? numberText(value) : csvText(scalarText(value));
      }
      return line(fields);
    },
  };
}

function csvText(text: string): string {
  return /[",\r\n]/.test(text) || text === CSV_NULL ? `"${text.replaceAll('"', '""')}"` : text;
}
