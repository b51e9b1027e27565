import { parseArgs } from 'node:util';
import { backupAuditDatabase } from '../audit/backup.js';
import { appendControlEvent, controlEvent } from '../audit/control-log.js';
import { openDatabase } from '../store/connection.js';
import { cliActor } from './actor.js';
import { displayPath } from '../config/gateway-config.js';
import { configOf, type ConfigSource } from './config-source.js';

/** `backup [--actor NAME]`: the snapshot the gateway's schedule takes, on demand; prints the snapshot's path. */
export async function backupCommand(source: ConfigSource, args: string[], out: NodeJS.WritableStream): Promise<void> {
  const { values } = parseArgs({ args, options: { actor: { type: 'string' } }, strict: true });
  const actor = cliActor(values.actor);
  const config = configOf(source);
  const result = await backupAuditDatabase(config.audit.path, config.audit.backupDir, config.audit.backupKeep);
  const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous });
  try {
    appendControlEvent(db, controlEvent('backup.made', actor, { file: result.file, bytes: result.bytes, deleted: result.deleted }));
  } finally {
    db.close();
  }
  for (const file of result.deleted) out.write(`deleted old snapshot ${displayPath(file)}\n`);
  out.write(`${displayPath(result.file)}\n`);
}
