import Database from 'better-sqlite3';
import type { Db } from '../store/connection.js';
import { checkContinuity, checkLease, claimGatewayId, IdentityConflict, type CentralMarks } from './fleet-identity.js';
import type { FleetDatabase } from './fleet-database.js';
import type { LocalWatermark } from './local-watermark.js';
import { centralInsert, centralParams, localSelect, shippedTable, SHIPPED_TABLES, type LocalRow, type ShippedTable, type ShippedTableName } from './shipped-tables.js';

/** Rows per INSERT: the measured knee (docs/fleet.md, "Scale on paper"); larger batches gain nothing and hold the event loop longer while they are read. */
const SHIP_BATCH_ROWS = 500;
/** How often an idle shipper looks for new rows: the contract says "within seconds". */
const POLL_MS = 300;
const RETRY_MIN_MS = 250;
const RETRY_MAX_MS = 5000;
/** While this file may not ship, it only keeps the lag and the conflict's reminders current. */
const CONFLICT_POLL_MS = 5000;
/** How often the local record of the watermark is written; behind is the safe side. */
const LOCAL_SAVE_MS = 1000;

export interface ShipperHooks {
  /** The first failure after shipping worked (PostgreSQL unreachable, or refusing a batch); rows wait locally. */
  onLost(err: unknown): void;
  /** Shipping works again after onLost. */
  onBack(): void;
  /** This file may not ship under its gateway id; called when it is found, and again each pass while it lasts. */
  onConflict(problem: IdentityConflict): void;
  onShipped(table: ShippedTableName, rows: number): void;
}

export interface ShipperOptions {
  readonly auditPath: string;
  readonly database: FleetDatabase;
  readonly gatewayId: string;
  /** Host and pid, shown in `fleet_gateway` to tell which process holds the id. */
  readonly instance: string;
  readonly local: LocalWatermark;
  readonly hooks: ShipperHooks;
  readonly batchRows?: number;
}

/** The watermark changed under this process (its own commit whose answer was lost, or another process under the id): verify again. */
class Resync extends Error {}

/**
 * Ships committed local rows to the fleet's PostgreSQL, after the fact: the
 * gateway commits locally first, unchanged, and this reads what is committed
 * on a read-only connection of its own, table by table in rowid (commit)
 * order after the central watermark, and inserts each batch with the
 * watermark's move in one PostgreSQL transaction. Nothing here is on a
 * request's path, and nothing throws into the gateway: while PostgreSQL is
 * away rows wait in the local file, which retention does not prune past the
 * watermark (local-watermark.ts).
 */
export class AuditShipper {
  private readonly reader: Db;
  private readonly fileId: string;
  private readonly batchRows: number;
  private readonly insertSql = new Map<ShippedTableName, string>();
  private readonly readAfter = new Map<ShippedTableName, Database.Statement>();
  private readonly maxRowid = new Map<ShippedTableName, Database.Statement>();
  private readonly oldestAfter = new Map<ShippedTableName, Database.Statement>();
  /** The central watermarks, once the id is claimed and the file found to continue them; null until then. */
  private marks: CentralMarks | null = null;
  /** Before the first claim: what this file recorded, so the lag is known while PostgreSQL is away. */
  private readonly localMarks: Map<ShippedTableName, number>;
  private conflict: IdentityConflict | null = null;
  private readonly lastLag = new Map<ShippedTableName, { rows: number; seconds: number }>();
  private failing = false;
  private retryMs = RETRY_MIN_MS;
  private lastLocalSave = 0;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopping = false;
  private closed = false;

  constructor(private readonly options: ShipperOptions) {
    this.reader = new Database(options.auditPath, { readonly: true, fileMustExist: true });
    // A read in WAL mode waits only while another connection recovers the WAL index; the next pass retries.
    this.reader.pragma('busy_timeout = 0');
    this.fileId = this.reader.prepare('SELECT file_id FROM fleet_file WHERE singleton = 1').pluck().get() as string;
    this.batchRows = options.batchRows ?? SHIP_BATCH_ROWS;
    for (const name of SHIPPED_TABLES) {
      this.insertSql.set(name, centralInsert(shippedTable(name)));
      this.readAfter.set(name, this.reader.prepare(localSelect(shippedTable(name))));
      this.maxRowid.set(name, this.reader.prepare(`SELECT max(rowid) FROM ${name}`).pluck());
      this.oldestAfter.set(name, this.reader.prepare(`SELECT ${shippedTable(name).timeColumn} FROM ${name} WHERE rowid > ? ORDER BY rowid LIMIT 1`).pluck());
    }
    const recorded = this.reader.prepare('SELECT table_name, through_row_id FROM fleet_shipped').all() as { table_name: ShippedTableName; through_row_id: number }[];
    this.localMarks = new Map(recorded.map((r) => [r.table_name, r.through_row_id]));
  }

  /** Whether this file is refused its gateway id. */
  get identityConflict(): boolean {
    return this.conflict !== null;
  }

  /** Rows not shipped yet (rowids are dense, so the difference counts them) and the age of the oldest, in seconds. */
  lag(name: ShippedTableName): { rows: number; seconds: number } {
    if (this.closed) return { rows: 0, seconds: 0 };
    try {
      const lag = this.readLag(name);
      this.lastLag.set(name, lag);
      return lag;
    } catch {
      // A read that met a WAL recovery: a scrape shows the last value rather than fail.
      return this.lastLag.get(name) ?? { rows: 0, seconds: 0 };
    }
  }

  private readLag(name: ShippedTableName): { rows: number; seconds: number } {
    const through = this.through(name);
    const max = (this.maxRowid.get(name)!.get() as number | null) ?? 0;
    if (max <= through) return { rows: 0, seconds: 0 };
    const oldest = this.oldestAfter.get(name)!.get(through) as string | undefined;
    const seconds = oldest === undefined ? 0 : Math.max(0, (Date.now() - Date.parse(`${oldest.replace(' ', 'T')}Z`)) / 1000);
    return { rows: max - through, seconds };
  }

  start(): void {
    this.schedule(0);
  }

  /**
   * Stops shipping: waits for a pass under way, then gives one last pass
   * (the rows of the shutdown itself) until `flushMs` is over; what is left
   * is shipped at the next start.
   */
  async stop(flushMs: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    const deadline = Date.now() + flushMs;
    await within(this.running, flushMs);
    if (!this.conflict && !this.failing && Date.now() < deadline) {
      this.running = this.pass().then(() => undefined, () => undefined);
      await within(this.running, deadline - Date.now());
    }
    this.closed = true;
    // The writer's connection is still open: the gateway closes it after this.
    try {
      this.options.local.flush();
    } catch {
      // Best effort at shutdown; the next start records it again.
    }
    this.reader.close();
  }

  private schedule(ms: number): void {
    if (this.stopping) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.tick();
    }, ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    let next: number;
    try {
      const more = await this.pass();
      if (this.failing) {
        this.failing = false;
        this.options.hooks.onBack();
      }
      this.retryMs = RETRY_MIN_MS;
      next = this.conflict ? CONFLICT_POLL_MS : more ? 0 : POLL_MS;
    } catch (err) {
      if (err instanceof IdentityConflict) {
        this.conflict = err;
        this.options.hooks.onConflict(err);
        next = CONFLICT_POLL_MS;
      } else if (err instanceof Resync) {
        this.marks = null;
        next = 0;
      } else {
        if (!this.failing && !this.closed) {
          this.failing = true;
          this.options.hooks.onLost(err);
        }
        next = this.retryMs;
        this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      }
    }
    this.running = null;
    this.schedule(next);
  }

  /** One pass over the tables; true when a table had more rows than one batch. */
  private async pass(): Promise<boolean> {
    if (this.conflict) {
      this.options.hooks.onConflict(this.conflict);
      return false;
    }
    if (!this.marks) await this.claim();
    let more = false;
    for (const name of SHIPPED_TABLES) {
      if (this.closed) return false;
      const rows = this.readAfter.get(name)!.all(this.through(name), this.batchRows) as LocalRow[];
      if (rows.length === 0) continue;
      await this.ship(shippedTable(name), rows);
      if (rows.length === this.batchRows) more = true;
    }
    if (!this.closed && Date.now() - this.lastLocalSave >= LOCAL_SAVE_MS && this.options.local.flush()) this.lastLocalSave = Date.now();
    return more;
  }

  private async claim(): Promise<void> {
    const { database, gatewayId, instance, local } = this.options;
    const marks = await database.transaction((client) => claimGatewayId(client, gatewayId, this.fileId, instance));
    if (this.closed) return;
    checkContinuity(this.reader, marks);
    // Verified to be this file's rows, so retention may go as far (a crash may have come between the central commit and the local record).
    for (const [name, mark] of marks) local.set(name, mark.rowId);
    this.marks = marks;
  }

  private async ship(t: ShippedTable, rows: readonly LocalRow[]): Promise<void> {
    const { database, gatewayId, local } = this.options;
    const expected = this.marks!.get(t.name) ?? { rowId: 0, hash: null };
    const last = rows[rows.length - 1]!;
    const mark = { rowId: last._rowid, hash: t.chain ? ((last.hash as string | null) ?? null) : null };
    await database.transaction(async (client) => {
      await checkLease(client, gatewayId, this.fileId);
      const { rows: found } = await client.query<{ through_row_id: string; through_hash: string | null }>(
        'SELECT through_row_id, through_hash FROM fleet_shipped WHERE gateway_id = $1 AND table_name = $2',
        [gatewayId, t.name],
      );
      const central = found[0] ? { rowId: Number(found[0].through_row_id), hash: found[0].through_hash } : { rowId: 0, hash: null };
      if (central.rowId !== expected.rowId || central.hash !== expected.hash) throw new Resync();
      if (t.chain && central.hash !== null && rows[0]!.prev_hash !== central.hash) {
        throw new IdentityConflict(`row ${rows[0]!._rowid} of ${t.name} in this audit file does not continue the chain shipped under this gateway id: give this gateway a fleet.gateway_id of its own`);
      }
      await client.query(this.insertSql.get(t.name)!, centralParams(t, gatewayId, rows));
      await client.query(
        `INSERT INTO fleet_shipped (gateway_id, table_name, through_row_id, through_hash) VALUES ($1, $2, $3, $4)
         ON CONFLICT (gateway_id, table_name) DO UPDATE SET through_row_id = excluded.through_row_id, through_hash = excluded.through_hash, shipped_at = now()`,
        [gatewayId, t.name, mark.rowId, mark.hash],
      );
      await client.query('UPDATE fleet_gateway SET heartbeat_at = now() WHERE gateway_id = $1', [gatewayId]);
    });
    this.marks!.set(t.name, mark);
    local.set(t.name, mark.rowId);
    this.options.hooks.onShipped(t.name, rows.length);
  }

  private through(name: ShippedTableName): number {
    return this.marks ? (this.marks.get(name)?.rowId ?? 0) : (this.localMarks.get(name) ?? 0);
  }
}

/** Waits for `p` at most `ms`; never rejects. */
async function within(p: Promise<unknown> | null, ms: number): Promise<void> {
  if (!p || ms <= 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p.catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}
