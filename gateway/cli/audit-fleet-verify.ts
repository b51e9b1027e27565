import { parseArgs } from 'node:util';
import { CHAINS } from '../store/chain.js';
import { FLEET_CHAIN_ID } from '../fleet/fleet-control-log.js';
import type { FleetDatabase } from '../fleet/fleet-database.js';
import { CENTRAL_AUDIT_TABLES, verifyCentralAudit, type GatewayVerified } from '../fleet/verify-central.js';
import { CliError } from './cli-error.js';
import { configOf, type ConfigSource } from './config-source.js';
import { withFleetDatabase } from './fleet-connection.js';

const COMMAND = 'audit verify --fleet';

/**
 * `audit verify --fleet`: walks every gateway's chains in the central tables.
 * Exit 0 with a line per gateway and a total, 1 naming the gateway and the
 * first bad row. Read-only: it never migrates, so a read-only role can run it.
 */
export async function auditFleetVerifyCommand(source: ConfigSource, rest: string[], out: NodeJS.WritableStream, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const { positionals } = parseArgs({ args: rest, options: { fleet: { type: 'boolean' } }, allowPositionals: true, strict: true });
  if (positionals.length > 0) throw new CliError(`audit verify takes no arguments, got "${positionals[0]}"`, 2);
  const config = configOf(source);
  return withFleetDatabase(config, COMMAND, env, async (db) => {
    await requireCentralTables(db);
    const report = await verifyCentralAudit(db, { retentionDays: config.audit.retentionDays, onGateway: (g) => out.write(`${gatewayLine(g)}\n`) });
    if (!report.ok) {
      const { gatewayId, chain, rowid, id, problem } = report.broken;
      out.write(`audit trail BROKEN: gateway ${gatewayId} ${chain} row ${rowid}${id ? ` (${id})` : ''} ${problem}\n`);
      return 1;
    }
    const total = (chain: (typeof CHAINS)[number]) => report.gateways.reduce((sum, g) => sum + g.rows[chain], 0);
    const gateways = report.gateways.filter((g) => g.gatewayId !== FLEET_CHAIN_ID).length;
    if (gateways === 0) out.write('no gateway has shipped audit rows to the fleet database yet\n');
    out.write(`fleet audit trail intact: ${gateways} gateways, ${total('usagelog')} decision rows, ${total('usagelog_outcome')} outcome rows and ${total('audit_event')} control events verified\n`);
    return 0;
  });
}

/** The heads are what to compare with each gateway's own `audit verify --export-head`. */
function gatewayLine(g: GatewayVerified): string {
  if (g.gatewayId === FLEET_CHAIN_ID) {
    const h = g.head.audit_event;
    return `fleet control log intact: ${g.rows.audit_event} control events (key changes made in fleet mode); ${h ? `head row ${h.rowid} ${h.hash}` : 'empty'}`;
  }
  const heads = CHAINS.map((chain) => {
    const h = g.head[chain];
    return h ? `${chain} head row ${h.rowid} ${h.hash}` : `${chain} empty`;
  });
  return `gateway ${g.gatewayId} intact: ${g.rows.usagelog} decision rows, ${g.rows.usagelog_outcome} outcome rows, ${g.rows.audit_event} control events; ${heads.join(', ')}`;
}

async function requireCentralTables(db: FleetDatabase): Promise<void> {
  const { rows } = await db.query<{ name: string }>('SELECT name FROM unnest($1::text[]) AS name WHERE to_regclass(name) IS NULL', [CENTRAL_AUDIT_TABLES]);
  if (rows.length > 0) {
    throw new CliError(`the fleet database has no central audit tables (${rows.map((r) => r.name).join(', ')} missing): start a gateway of this release in fleet mode first, it creates them`);
  }
}
