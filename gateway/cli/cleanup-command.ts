import { parseArgs } from 'node:util';
import { openDatabase } from '../store/connection.js';
import { appendControlEvent, controlEvent } from '../audit/control-log.js';
import { latestAnchors, pruneAuditRows, retentionCutoff } from '../audit/retention.js';
import { localShippedThrough } from '../fleet/local-watermark.js';
import { cliActor } from './actor.js';
import { CliError } from './cli-error.js';
import { configOf, type ConfigSource } from './config-source.js';

/** `cleanup-logs [DAYS] [--actor NAME]`: the same retention the gateway's schedule runs, on demand, on the control log. */
export async function cleanupCommand(source: ConfigSource, args: string[], out: NodeJS.WritableStream): Promise<void> {
  const { values, positionals } = parseArgs({ args, options: { actor: { type: 'string' } }, allowPositionals: true, strict: true });
  if (positionals.length > 1) throw new CliError('cleanup-logs takes at most one DAYS argument', 2);
  if (positionals[0] !== undefined && !/^\d+$/.test(positionals[0])) throw new CliError(`DAYS must be a whole number of days, got "${positionals[0]}"`, 2);
  const actor = cliActor(values.actor);
  const config = configOf(source);
  const days = positionals[0] === undefined ? config.audit.retentionDays : Number(positionals[0]);
  if (!Number.isInteger(days) || days < 0) throw new CliError(`DAYS must be a whole number of days, got "${positionals[0]}"`, 2);
  if (days < config.audit.retentionDays) {
    throw new CliError(`rows inside the ${config.audit.retentionDays}-day retention window (audit.retention_days) are protected; DAYS must be at least ${config.audit.retentionDays}`, 2);
  }
  const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, retentionDays: config.audit.retentionDays });
  try {
    const now = new Date();
    // In fleet mode rows not shipped to the fleet database yet are kept, whatever their age.
    const deleted = await pruneAuditRows(db, days, { now, shippedThrough: config.fleet ? localShippedThrough(db) : undefined });
    appendControlEvent(db, controlEvent('retention.ran', actor, { decisions: deleted.decisions, outcomes: deleted.outcomes, retention_days: days, anchors: latestAnchors(db) }));
    out.write(`Deleted ${deleted.decisions} audit rows (and ${deleted.outcomes} outcome rows) created before ${retentionCutoff(days, now)} UTC (older than ${days} days).\n`);
  } finally {
    db.close();
  }
}
