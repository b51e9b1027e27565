/**
 * Shipper throughput against a throw-away local PostgreSQL:
 *   node --import tsx test/bench/fleet-ship.ts [ROWS]
 * Writes ROWS decisions and ROWS outcomes with the gateway's own writer, then
 * ships the file under a fresh gateway id per batch size and prints rows/s
 * and the longest single read of a batch from SQLite (event-loop time).
 */
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDatabase } from '../../gateway/store/connection.js';
import { migrateCentralSchema } from '../../gateway/fleet/central-schema.js';
import { FleetDatabase } from '../../gateway/fleet/fleet-database.js';
import { LocalWatermark } from '../../gateway/fleet/local-watermark.js';
import { localSelect, shippedTable, SHIPPED_TABLES } from '../../gateway/fleet/shipped-tables.js';
import { AuditShipper } from '../../gateway/fleet/shipper.js';
import { writeAuditRows } from '../helpers/audit-rows.js';
import { startPostgres } from '../helpers/postgres.js';

const rows = Number(process.argv[2] ?? 50_000);
const dir = mkdtempSync(path.join(tmpdir(), 'govgate-ship-bench-'));
const file = path.join(dir, 'audit.db');
const cluster = await startPostgres();
const central = new FleetDatabase(cluster.url, { applicationName: 'govgate bench' });
try {
  await migrateCentralSchema(central);
  await writeAuditRows(file, rows, 0, true);
  for (const batchRows of [100, 500, 1000, 2000]) {
    // Each batch size ships a fresh copy of the file (its local watermark at 0) under a gateway id of its own.
    const copy = path.join(dir, `audit-${batchRows}.db`);
    copyFileSync(file, copy);
    const db = openDatabase(copy, { synchronous: 'NORMAL' });
    const shipper = new AuditShipper({
      auditPath: copy, database: central, gatewayId: `bench-${batchRows}`, instance: 'bench', local: new LocalWatermark(db), batchRows,
      hooks: { onLost(err) { throw err; }, onBack() {}, onConflict(p) { throw p; }, onShipped() {} },
    });
    const started = performance.now();
    shipper.start();
    while (!SHIPPED_TABLES.every((t) => shipper.lag(t).rows === 0)) await new Promise((resolve) => setTimeout(resolve, 5));
    const ms = performance.now() - started;
    await shipper.stop(0);
    // The read a pass does per batch, alone: what the event loop gives to shipping at a time.
    const read = db.prepare(localSelect(shippedTable('usagelog')));
    let worstReadMs = 0;
    for (let after = 0; after < rows; after += batchRows) {
      const t0 = performance.now();
      read.all(after, batchRows);
      worstReadMs = Math.max(worstReadMs, performance.now() - t0);
    }
    db.close();
    console.log(`batch ${String(batchRows).padStart(4)}: ${2 * rows} rows (decisions + outcomes) in ${(ms / 1000).toFixed(2)} s = ${Math.round((2 * rows) / (ms / 1000))} rows/s; longest batch read ${worstReadMs.toFixed(1)} ms`);
  }
} finally {
  await central.close();
  cluster.close();
  rmSync(dir, { recursive: true, force: true });
}
