import type { ChainName } from '../store/chain.js';

/** The local tables a fleet gateway ships, in the order of a shipping pass: a policy text before the decisions naming it, rows before the anchors that follow them. */
export const SHIPPED_TABLES = ['policy_version', 'audit_event', 'usagelog', 'usagelog_outcome', 'audit_anchor'] as const;
export type ShippedTableName = (typeof SHIPPED_TABLES)[number];

/** How a local value travels: `time` is SQLite's UTC text, turned into a TIMESTAMPTZ; `bool` is 0/1. */
type Kind = 'text' | 'int8' | 'float8' | 'bool' | 'time';

export interface ShippedTable {
  readonly name: ShippedTableName;
  /** The hash chain the table holds; its last shipped hash guards against a file that does not continue it. */
  readonly chain: ChainName | null;
  /** The local columns shipped, under the same names centrally. */
  readonly columns: readonly (readonly [string, Kind])[];
  /** The central column that receives the local rowid, when no shipped column is the rowid already. */
  readonly rowIdColumn: 'row_id' | null;
  /** Whether rows belong to one gateway (`gateway_id` column) or to the fleet. */
  readonly perGateway: boolean;
  /** The column whose age is the lag in seconds. */
  readonly timeColumn: string;
}

const TABLES: Readonly<Record<ShippedTableName, ShippedTable>> = {
  usagelog: {
    name: 'usagelog',
    chain: 'usagelog',
    columns: [
      ['id', 'text'], ['customer_id', 'text'], ['api_key_id', 'text'], ['model', 'text'], ['operation', 'text'], ['meta', 'text'],
      ['risk_score', 'float8'], ['allowed', 'bool'], ['reason', 'text'], ['created_at', 'time'], ['policy_hash', 'text'], ['causes', 'text'],
      ['prev_hash', 'text'], ['hash', 'text'],
    ],
    rowIdColumn: 'row_id',
    perGateway: true,
    timeColumn: 'created_at',
  },
  usagelog_outcome: {
    name: 'usagelog_outcome',
    chain: 'usagelog_outcome',
    columns: [
      ['log_id', 'text'], ['status', 'int8'], ['duration_ms', 'float8'], ['upstream_ms', 'float8'], ['prompt_tokens', 'int8'],
      ['completion_tokens', 'int8'], ['total_tokens', 'int8'], ['error', 'text'], ['created_at', 'time'], ['prev_hash', 'text'], ['hash', 'text'],
    ],
    rowIdColumn: 'row_id',
    perGateway: true,
    timeColumn: 'created_at',
  },
  audit_event: {
    name: 'audit_event',
    chain: 'audit_event',
    columns: [['id', 'text'], ['kind', 'text'], ['actor', 'text'], ['detail', 'text'], ['created_at', 'time'], ['prev_hash', 'text'], ['hash', 'text']],
    rowIdColumn: 'row_id',
    perGateway: true,
    timeColumn: 'created_at',
  },
  audit_anchor: {
    name: 'audit_anchor',
    chain: null,
    columns: [
      ['id', 'int8'], ['chain', 'text'], ['through_rowid', 'int8'], ['through_hash', 'text'], ['through_created_at', 'time'],
      ['rows_deleted', 'int8'], ['created_at', 'time'],
    ],
    rowIdColumn: null,
    perGateway: true,
    timeColumn: 'created_at',
  },
  policy_version: {
    name: 'policy_version',
    chain: null,
    columns: [['hash', 'text'], ['loaded_at', 'time'], ['path', 'text'], ['text', 'text']],
    rowIdColumn: null,
    perGateway: false,
    timeColumn: 'loaded_at',
  },
};

export function shippedTable(name: ShippedTableName): ShippedTable {
  return TABLES[name];
}

/** A local row as read for shipping: its rowid, then its columns. */
export type LocalRow = Readonly<Record<string, unknown>> & { readonly _rowid: number };

/** Reads the next rows after a watermark, in rowid (commit) order. */
export function localSelect(t: ShippedTable): string {
  return `SELECT rowid AS _rowid, ${t.columns.map(([c]) => c).join(', ')} FROM ${t.name} WHERE rowid > ? ORDER BY rowid LIMIT ?`;
}

const ARRAY_TYPE: Readonly<Record<Kind, string>> = { text: 'text[]', int8: 'int8[]', float8: 'float8[]', bool: 'bool[]', time: 'text[]' };

/**
 * One INSERT for a whole batch: each column travels as one array parameter
 * and `unnest` turns them back into rows, so a batch is one statement of a
 * fixed shape whatever its size (multi-row VALUES would be a new statement per
 * size, and hit the 65,535-parameter limit at about 4,000 decision rows).
 * Times go as text and are read as UTC, whatever the session's time zone.
 * A row shipped twice (a crash between the commit here and the local record
 * of it) is stored once.
 */
export function centralInsert(t: ShippedTable): string {
  const params: string[] = [];
  const names: string[] = [];
  const values: string[] = [];
  let n = 1;
  const target: string[] = [];
  if (t.perGateway) {
    target.push('gateway_id');
    values.push(`$${n++}::text`);
  }
  if (t.rowIdColumn) {
    target.push(t.rowIdColumn);
    params.push(`$${n++}::int8[]`);
    names.push('_rowid');
    values.push('u._rowid');
  }
  for (const [column, kind] of t.columns) {
    target.push(column);
    params.push(`$${n++}::${ARRAY_TYPE[kind]}`);
    names.push(column);
    values.push(kind === 'time' ? `(u.${column}::timestamp AT TIME ZONE 'UTC')` : `u.${column}`);
  }
  const key = t.perGateway ? `gateway_id, ${t.rowIdColumn ?? 'id'}` : 'hash';
  return `INSERT INTO ${t.name} (${target.join(', ')}) SELECT ${values.join(', ')} FROM unnest(${params.join(', ')}) AS u(${names.join(', ')}) ON CONFLICT (${key}) DO NOTHING`;
}

/** The parameters of `centralInsert` for a batch, column by column. */
export function centralParams(t: ShippedTable, gatewayId: string, rows: readonly LocalRow[]): unknown[] {
  const params: unknown[] = [];
  if (t.perGateway) params.push(gatewayId);
  if (t.rowIdColumn) params.push(rows.map((r) => r._rowid));
  for (const [column, kind] of t.columns) {
    params.push(rows.map((r) => {
      const v = r[column] ?? null;
      if (v === null) return null;
      return kind === 'bool' ? v !== 0 : v;
    }));
  }
  return params;
}
