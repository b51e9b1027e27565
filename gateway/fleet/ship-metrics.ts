import { Counter, Gauge, type Registry } from 'prom-client';
import { SHIPPED_TABLES, type ShippedTableName } from './shipped-tables.js';

export interface ShipLagSource {
  lag(table: ShippedTableName): { rows: number; seconds: number };
  readonly identityConflict: boolean;
}

/**
 * The shipper's metrics, on the gateway's registry (/metrics). Lag is read
 * from the local file at each scrape, so it keeps growing while PostgreSQL is
 * away and the shipper only retries now and then. Not part of /readyz: a
 * gateway behind on shipping still governs and records every request.
 */
export function registerShipMetrics(registry: Registry, source: ShipLagSource): { shipped(table: ShippedTableName, rows: number): void } {
  const registers = [registry];
  new Gauge({
    name: 'govgate_fleet_ship_lag_rows',
    help: 'Rows committed locally and not yet shipped to the fleet database, by table',
    labelNames: ['table'],
    registers,
    collect() {
      for (const table of SHIPPED_TABLES) this.set({ table }, source.lag(table).rows);
    },
  });
  new Gauge({
    name: 'govgate_fleet_ship_lag_seconds',
    help: 'Age of the oldest row not yet shipped to the fleet database, by table; 0 when all are shipped',
    labelNames: ['table'],
    registers,
    collect() {
      for (const table of SHIPPED_TABLES) this.set({ table }, source.lag(table).seconds);
    },
  });
  new Gauge({
    name: 'govgate_fleet_identity_conflict',
    help: '1 while this gateway may not ship: its fleet.gateway_id belongs to another audit file, or the file does not continue what was shipped under it',
    registers,
    collect() {
      this.set(source.identityConflict ? 1 : 0);
    },
  });
  const shipped = new Counter({ name: 'govgate_fleet_shipped_rows_total', help: 'Rows shipped to the fleet database, by table', labelNames: ['table'], registers });
  for (const table of SHIPPED_TABLES) shipped.inc({ table }, 0);
  return {
    shipped(table, rows) {
      shipped.inc({ table }, rows);
    },
  };
}
