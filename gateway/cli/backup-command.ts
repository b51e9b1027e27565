import { parseArgs } from 'node:util';
import { backupAuditDatabase } from '../audit/backup.js';
import { displayPath, type GatewayConfig } from '../config/gateway-config.js';

/** `backup`: the snapshot the gateway's schedule takes, on demand; prints the snapshot's path. */
export async function backupCommand(config: GatewayConfig, args: string[], out: NodeJS.WritableStream): Promise<void> {
  parseArgs({ args, options: {}, strict: true });
  const result = await backupAuditDatabase(config.audit.path, config.audit.backupDir, config.audit.backupKeep);
  for (const file of result.deleted) out.write(`deleted old snapshot ${displayPath(file)}\n`);
  out.write(`${displayPath(result.file)}\n`);
}
