import { parseArgs } from 'node:util';
import { openDatabase } from '../audit/database.js';
import { pruneAuditRows, retentionCutoff } from '../audit/retention.js';
import { CliError } from './cli-error.js';
import { configOf, type ConfigSource } from './config-source.js';

/** `cleanup-logs [DAYS]`: the same retention the gateway's schedule runs, on demand. */
export async function cleanupCommand(source: ConfigSource, args: string[], out: NodeJS.WritableStream): Promise<void> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length > 1) throw new CliError('cleanup-logs takes at most one DAYS argument', 2);
  if (positionals[0] !== undefined && !/^\d+$/.test(positionals[0])) throw new CliError(`DAYS must be a whole number of days, got "${positionals[0]}"`, 2);
  const config = configOf(source);
  const days = positionals[0] === undefined ? config.audit.retentionDays : Number(positionals[0]);
  if (!Number.isInteger(days) || days < 0) throw new CliError(`DAYS must be a whole number of days, got "${positionals[0]}"`, 2);
  if (days < config.audit.retentionDays) {
    throw new CliError(`rows inside the ${config.audit.retentionDays}-day retention window (audit.retention_days) are protected; DAYS must be at least ${config.audit.retentionDays}`, 2);
  }
  const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, retentionDays: config.audit.retentionDays });
  try {
    const now = new Date();
    const deleted = await pruneAuditRows(db, days, { now });
    out.write(`Deleted ${deleted.decisions} audit rows (and ${deleted.outcomes} outcome rows) created before ${retentionCutoff(days, now)} UTC (older than ${days} days).\n`);
  } finally {
    db.close();
  }
}
