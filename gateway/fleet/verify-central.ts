import type pg from 'pg';
import { CHAIN_COLUMNS, CHAINS, GENESIS_HASH, type ChainName } from '../store/chain.js';
import { checkAnchorOrder, checkContent, misorder, unlinkedProblem, type ChainAnchor, type ChainRow } from '../audit/chain-rules.js';
import { retentionCutoff } from '../audit/retention.js';
import type { ChainHead } from '../audit/verify-chain.js';
import type { FleetDatabase } from './fleet-database.js';

/** Rows fetched per query: large enough that round trips do not dominate, small enough to keep memory flat. */
export const VERIFY_BATCH_ROWS = 5000;

export interface FleetChainBreak {
  readonly gatewayId: string;
  readonly chain: ChainName;
  readonly rowid: number;
  /** The row's log id (`id`, or `log_id` for outcomes), when it has one. */
  readonly id: string | null;
  readonly problem: string;
}

export interface GatewayVerified {
  readonly gatewayId: string;
  readonly rows: Readonly<Record<ChainName, number>>;
  readonly head: Readonly<Record<ChainName, ChainHead | null>>;
}

export type FleetVerifyReport =
  | { readonly ok: true; readonly gateways: readonly GatewayVerified[] }
  | { readonly ok: false; readonly gateways: readonly GatewayVerified[]; readonly broken: FleetChainBreak };

export interface FleetVerifyOptions {
  /** audit.retention_days: a retention anchor may only cover rows older than that. */
  readonly retentionDays?: number;
  readonly now?: Date;
  readonly batchRows?: number;
  /** Called as each gateway is found intact, so a long walk shows progress. */
  readonly onGateway?: (verified: GatewayVerified) => void;
}

/** The central audit tables `audit verify --fleet` reads; without them no gateway has shipped anything. */
export const CENTRAL_AUDIT_TABLES = [...CHAINS, 'audit_anchor'] as const;

type Anchor = ChainAnchor & { readonly id: string };

/** The SQLite text form of a timestamp, 'YYYY-MM-DD HH:MM:SS.SSS' UTC: what the local hash covered. */
const sqliteTimeOf = (column: string) => `to_char(${column} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS')`;

/**
 * Each hashed column selected so the row comes back in the shape the local
 * row had: timestamps as SQLite's text, `allowed` as 0/1, integers as decimal
 * text (exact whatever their width), and REALs as the bytes of the double
 * (float8send), so no decimal rendering sits between the shipped value and its hash.
 */
function selectList(chain: ChainName): string {
  const columns = CHAIN_COLUMNS[chain].map(([name, kind]) => {
    if (name === 'created_at') return `${sqliteTimeOf(name)} AS ${name}`;
    if (name === 'allowed') return 'allowed::int::text AS allowed';
    if (kind === 'real') return `float8send(${name}) AS ${name}`;
    if (kind === 'integer') return `${name}::text AS ${name}`;
    return name;
  });
  return ['row_id::text AS row_id', 'prev_hash', 'hash', ...columns].join(', ');
}

function localShape(chain: ChainName, raw: Record<string, unknown>): ChainRow {
  const row: Record<string, unknown> = { ...raw, row_id: Number(raw.row_id) };
  for (const [name, kind] of CHAIN_COLUMNS[chain]) {
    const value = raw[name];
    if (kind === 'real' && Buffer.isBuffer(value)) row[name] = value.readDoubleBE(0);
  }
  return row as ChainRow;
}

/**
 * One gateway's chain in row_id order, a batch at a time by keyset
 * (gateway_id, row_id): the primary key's index serves each batch, and no
 * more than one batch is ever in memory.
 */
async function* chainRows(client: pg.PoolClient, gatewayId: string, chain: ChainName, batchRows: number): AsyncGenerator<ChainRow> {
  const sql = `SELECT ${selectList(chain)} FROM ${chain} WHERE gateway_id = $1 AND row_id > $2 ORDER BY ${chain}.row_id LIMIT $3`;
  let after = '-1';
  for (;;) {
    const { rows } = await client.query<Record<string, unknown>>(sql, [gatewayId, after, batchRows]);
    for (const raw of rows) yield localShape(chain, raw);
    if (rows.length < batchRows) return;
    after = String(rows[rows.length - 1]!.row_id);
  }
}

/**
 * Walks every gateway's three chains in the central tables inside one
 * REPEATABLE READ snapshot, so rows the shippers add meanwhile do not shift
 * the ground. The rules are the local verifier's (gateway/audit/verify-chain.ts),
 * with one difference that follows from shipping: central tables keep rows a
 * gateway's retention has since deleted locally, so an anchor may cover rows
 * that are still here. Such an anchor must name a central row with its hash;
 * the first central row links to the latest anchor before it, or to genesis.
 */
export async function verifyCentralAudit(db: FleetDatabase, options: FleetVerifyOptions = {}): Promise<FleetVerifyReport> {
  const cutoff = options.retentionDays === undefined ? null : retentionCutoff(options.retentionDays, options.now);
  const batchRows = options.batchRows ?? VERIFY_BATCH_ROWS;
  return db.transaction(async (client) => {
    await client.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const gateways: GatewayVerified[] = [];
    for (const gatewayId of await gatewayIds(client)) {
      const rows: Record<ChainName, number> = { usagelog: 0, usagelog_outcome: 0, audit_event: 0 };
      const head: Record<ChainName, ChainHead | null> = { usagelog: null, usagelog_outcome: null, audit_event: null };
      for (const chain of CHAINS) {
        const result = await walk(client, gatewayId, chain, cutoff, batchRows);
        rows[chain] = result.count;
        if ('broken' in result) return { ok: false, gateways, broken: result.broken };
        head[chain] = result.head;
      }
      const verified = { gatewayId, rows, head };
      gateways.push(verified);
      options.onGateway?.(verified);
    }
    return { ok: true, gateways };
  });
}

/** Every gateway with a row in any central audit table, by a skip scan of each primary key (one index probe per gateway, not a table scan). */
async function gatewayIds(client: pg.PoolClient): Promise<string[]> {
  const skipScan = (table: string) => `
    SELECT id FROM (
      WITH RECURSIVE g(id) AS (
        SELECT min(gateway_id) FROM ${table}
        UNION ALL
        SELECT (SELECT min(gateway_id) FROM ${table} WHERE gateway_id > g.id) FROM g WHERE g.id IS NOT NULL
      ) SELECT id FROM g WHERE id IS NOT NULL
    ) AS ${table}_gateways`;
  const { rows } = await client.query<{ id: string }>(`${CENTRAL_AUDIT_TABLES.map(skipScan).join(' UNION ')} ORDER BY id`);
  return rows.map((r) => r.id);
}

type WalkResult = { count: number; head: ChainHead | null } | { count: number; broken: FleetChainBreak };

async function walk(client: pg.PoolClient, gatewayId: string, chain: ChainName, cutoff: string | null, batchRows: number): Promise<WalkResult> {
  const idColumn = CHAIN_COLUMNS[chain][0]![0];
  const anchors = await loadAnchors(client, gatewayId, chain);
  const anchorProblem = checkAnchors(gatewayId, chain, anchors, cutoff);
  if (anchorProblem) return { count: 0, broken: anchorProblem };
  let count = 0;
  const breakAt = (row: ChainRow, problem: string): WalkResult => ({
    count,
    broken: { gatewayId, chain, rowid: row.row_id, id: typeof row[idColumn] === 'string' ? (row[idColumn] as string) : null, problem },
  });
  const iterator = chainRows(client, gatewayId, chain, batchRows);
  let expected = GENESIS_HASH;
  let linkedAnchor: Anchor | undefined;
  /** The next anchor whose covered row must still be here, in through_rowid order. */
  let pending = 0;
  let previous: ChainRow | null = null;
  try {
    for (let next = await iterator.next(); !next.done; ) {
      const checked = checkContent(chain, next.value);
      if ('problem' in checked) return breakAt(next.value, checked.problem);
      const { row } = checked;
      if (!previous) {
        // Anchors before the first central row cover rows central retention deleted (or, locally, rows pruned before shipping began): the chain goes on from the latest.
        while (pending < anchors.length && anchors[pending]!.through_rowid < row.row_id) linkedAnchor = anchors[pending++];
        if (linkedAnchor) expected = linkedAnchor.through_hash;
      }
      next = await iterator.next();
      if (row.prev_hash !== expected) {
        const swapped = misorder(row, previous, next.done ? null : next.value, expected);
        if (swapped) return breakAt(swapped.at, swapped.problem);
        return breakAt(row, unlinkedProblem(previous, await rowWithHash(client, gatewayId, chain, row.prev_hash), linkedAnchor));
      }
      const anchor = anchors[pending];
      if (anchor && anchor.through_rowid <= row.row_id) {
        if (anchor.through_rowid < row.row_id) return breakAt(row, `follows row ${anchor.through_rowid}, which retention anchor ${anchor.id} covers and which is missing here: rows were removed`);
        if (anchor.through_hash !== row.hash) return breakAt(row, `has another hash than retention anchor ${anchor.id} recorded for it: the row or the anchor was changed`);
        pending++;
      }
      expected = row.hash;
      previous = row;
      count++;
    }
  } finally {
    await iterator.return(undefined);
  }
  const uncovered = previous ? anchors[pending] : undefined;
  if (previous && uncovered) {
    return breakAt(previous, `is the last row, but retention anchor ${uncovered.id} covers rows through ${uncovered.through_rowid}: rows were cut off the end of the chain`);
  }
  return {
    count,
    head: previous ? { rowid: previous.row_id, id: String(previous[idColumn]), hash: previous.hash as string, created_at: String(previous.created_at) } : null,
  };
}

/** Anchors are one per retention run, so a gateway's are few: they are read whole. */
async function loadAnchors(client: pg.PoolClient, gatewayId: string, chain: ChainName): Promise<Anchor[]> {
  const { rows } = await client.query<{ id: string; through_rowid: string; through_hash: string; through_created_at: string }>(
    `SELECT id::text AS id, through_rowid::text AS through_rowid, through_hash, ${sqliteTimeOf('through_created_at')} AS through_created_at
       FROM audit_anchor WHERE gateway_id = $1 AND chain = $2 ORDER BY audit_anchor.id`,
    [gatewayId, chain],
  );
  return rows.map((r) => ({ ...r, through_rowid: Number(r.through_rowid) }));
}

/** As locally: each anchor covers more rows than the one before, and none covers a row inside the retention window. */
function checkAnchors(gatewayId: string, chain: ChainName, anchors: readonly Anchor[], cutoff: string | null): FleetChainBreak | null {
  const checked = checkAnchorOrder(anchors, cutoff);
  return 'latest' in checked ? null : { gatewayId, chain, rowid: checked.anchor.through_rowid, id: null, problem: checked.problem };
}

/**
 * Which row a broken link points at, to name the cause. Only run on a break;
 * on a very large table without an index on `hash` the search could take
 * minutes, so it gets seconds, and on timeout the break is reported without it.
 */
async function rowWithHash(client: pg.PoolClient, gatewayId: string, chain: ChainName, hash: string): Promise<string | null> {
  await client.query('SAVEPOINT find_link');
  try {
    await client.query("SET LOCAL statement_timeout = '5s'");
    const { rows } = await client.query<{ row_id: string }>(`SELECT row_id::text AS row_id FROM ${chain} WHERE gateway_id = $1 AND hash = $2 LIMIT 1`, [gatewayId, hash]);
    return rows[0]?.row_id ?? null;
  } catch {
    return null;
  } finally {
    // Also undoes the SET LOCAL.
    await client.query('ROLLBACK TO SAVEPOINT find_link');
  }
}
