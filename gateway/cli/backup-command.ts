import { parseArgs } from 'node:util';
import { backupAuditDatabase } from '../audit/backup.js';
import { displayPath } from '../config/gateway-config.js';
import { configOf, type ConfigSource } from './config-source.js';

/** `backup`: the snapshot the gateway's schedule takes, on demand; prints the snapshot's path. */
export async function backupCommand(source: ConfigSource, args: string[], out: NodeJS.WritableStream): Promise<void> {
  parseArgs({ args, options: {}, strict: true });
  const config = configOf(source);
  const result = await backupAuditDatabase(config.audit.path, config.audit.backupDir, config.audit.backupKeep);
  for (const file of result.deleted) out.write(`deleted old snapshot ${displayPath(file)}\n`);
  out.write(`${displayPath(result.file)}\n`);
}
