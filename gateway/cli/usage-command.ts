import { parseArgs } from 'node:util';
import { usageReport, type UsageRow } from '../audit/usage-queries.js';
import { openDatabase } from '../store/connection.js';
import { sqliteTime } from '../store/sqlite-time.js';
import { displayPath, type GatewayConfig } from '../config/gateway-config.js';
import type { FleetUsageFilter } from '../fleet/central-usage.js';
import { CliError } from './cli-error.js';
import { configOf, type ConfigSource } from './config-source.js';

const UNIT_MS = { d: 86_400_000, h: 3_600_000, m: 60_000 } as const;
const DEFAULT_SINCE = '30d';

/**
 * `usage [--customer ID] [--gateway ID] [--since 7d] [--json]`: requests,
 * refusals and the provider-reported tokens per customer and model, from the
 * audit database; in fleet mode from the central tables, per gateway too.
 * /v1/check questions are not requests and are left out. The single-node path
 * stays synchronous (its callers read the output right after the call); the
 * fleet path returns the promise of its PostgreSQL query.
 */
export function usageCommand(source: ConfigSource, args: string[], out: NodeJS.WritableStream, now: Date = new Date(), env: NodeJS.ProcessEnv = process.env): void | Promise<void> {
  const { values } = parseArgs({ args, options: { customer: { type: 'string' }, gateway: { type: 'string' }, since: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const since = values.since ?? DEFAULT_SINCE;
  const from = new Date(now.getTime() - durationMs(since));
  const cutoff = sqliteTime(from);
  const config = configOf(source);
  if (config.fleet) return fleetUsage(config, { since: from, customer: values.customer, gateway: values.gateway }, values.json === true, out, env);
  if (values.gateway !== undefined) throw new CliError(`--gateway needs fleet mode: ${config.file} has no fleet.database_url_env`, 2);
  let db;
  try {
    db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, readonly: true });
  } catch {
    throw new CliError(`cannot open the audit database ${displayPath(config.audit.path)} (has the gateway run here yet?)`);
  }
  let rows: UsageRow[];
  try {
    rows = usageReport(db, cutoff, values.customer ?? null);
  } finally {
    db.close();
  }
  if (values.json) {
    out.write(`${JSON.stringify(rows)}\n`);
    return;
  }
  writeTable(out, rows, cutoff, false);
}

async function fleetUsage(config: GatewayConfig, filter: FleetUsageFilter, json: boolean, out: NodeJS.WritableStream, env: NodeJS.ProcessEnv): Promise<void> {
  // Loaded on demand, like the commands themselves: single-node usage never loads pg.
  const { withFleetDatabase } = await import('./fleet-connection.js');
  const { centralUsage } = await import('../fleet/central-usage.js');
  const rows = await withFleetDatabase(config, 'usage', env, (db) => centralUsage(db, filter));
  if (json) {
    out.write(`${JSON.stringify(rows)}\n`);
    return;
  }
  writeTable(out, rows, sqliteTime(filter.since), true);
}

/** In fleet mode the gateway is the first column: the rows are grouped by it first. */
function writeTable(out: NodeJS.WritableStream, rows: readonly (UsageRow & { gateway?: string })[], cutoff: string, byGateway: boolean): void {
  const leading = byGateway ? ['GATEWAY'] : [];
  const header = [...leading, 'CUSTOMER', 'MODEL', 'REQUESTS', 'BLOCKED', 'PROMPT_TOKENS', 'COMPLETION_TOKENS', 'TOTAL_TOKENS'];
  const table = [header, ...rows.map((r) => [...(byGateway ? [r.gateway ?? ''] : []), r.customer, r.model ?? '-', ...[r.requests, r.blocked, r.prompt_tokens, r.completion_tokens, r.total_tokens].map(String)])];
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  const nameColumns = leading.length + 2;
  // Names read left to right, numbers line up on their last digit.
  for (const row of table) out.write(`${row.map((cell, i) => (i < nameColumns ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd()}\n`);
  if (rows.length === 0) out.write(`no requests since ${cutoff} UTC\n`);
}

/** `7d`, `12h`, `30m`. */
function durationMs(text: string): number {
  const m = /^(\d{1,6})([dhm])$/.exec(text);
  if (!m || Number(m[1]) === 0) throw new CliError(`--since must be a positive number of days, hours or minutes such as 7d, 12h or 30m, got "${text}"`, 2);
  return Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS];
}
