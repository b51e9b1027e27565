import { parseArgs } from 'node:util';
import { appendControlEvent, controlEvent } from '../audit/control-log.js';
import { openDatabase } from '../store/connection.js';
import { createKey, KeyStoreError, listKeys, revokeKey, type ApiKeyRecord, type CreatedKey } from '../auth/key-store.js';
import type { GatewayConfig } from '../config/gateway-config.js';
import { createCentralKey, listCentralKeys, revokeCentralKey } from '../fleet/central-keys.js';
import { migrateCentralSchema } from '../fleet/central-schema.js';
import type { FleetConfig } from '../config/fleet-config.js';
import { describeFleetError, FleetDatabase, fleetDatabaseUrl } from '../fleet/fleet-database.js';
import { cliActor } from './actor.js';
import { CliError } from './cli-error.js';

const ACTIONS = { create, list, revoke } as const;

/** The keys a command works on: the local SQLite file, or the fleet's PostgreSQL. */
interface Keys {
  readonly fleet: boolean;
  /** Creates a key and records `key.created` for the actor, at once. */
  create(customerId: string, name: string | null, actor: string): Promise<CreatedKey>;
  list(customerId?: string): Promise<ApiKeyRecord[]>;
  /** Revokes a key and records `key.revoked` for the actor, at once. */
  revoke(keyId: string, actor: string): Promise<void>;
}

/**
 * `keys create|list|revoke`; `keys` alone, or followed only by flags, is `keys list`.
 * In fleet mode (`fleet.database_url_env`) keys live in PostgreSQL, never in
 * the local file: a key written locally would work on no gateway of the fleet.
 */
export async function keysCommand(loadConfig: () => GatewayConfig, args: string[], out: NodeJS.WritableStream, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const listing = args[0] === undefined || args[0].startsWith('-');
  const action = listing ? 'list' : args[0]!;
  // Arguments are checked before the database is opened, so a typo neither creates data/audit.db nor needs the configuration.
  if (!Object.hasOwn(ACTIONS, action)) throw new CliError(`unknown keys command "${action}" (expected create, list or revoke)`, 2);
  const run = ACTIONS[action as keyof typeof ACTIONS](listing ? args : args.slice(1), out);
  const config = loadConfig();
  try {
    if (config.fleet) await runInFleet(config.fleet, config.file, env, `keys ${action}`, run);
    else await runLocally(config, run);
  } catch (err) {
    if (err instanceof KeyStoreError) throw new CliError(err.message);
    throw err;
  }
}

async function runLocally(config: GatewayConfig, run: Run): Promise<void> {
  const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, retentionDays: config.audit.retentionDays });
  try {
    await run({
      fleet: false,
      create: async (customerId, name, actor) => db.transaction(() => {
        const created = createKey(db, customerId, name);
        appendControlEvent(db, controlEvent('key.created', actor, { key_id: created.id, customer_id: customerId, name }));
        return created;
      }).immediate(),
      list: async (customerId) => listKeys(db, customerId),
      revoke: async (keyId, actor) => db.transaction(() => {
        const customerId = revokeKey(db, keyId);
        appendControlEvent(db, controlEvent('key.revoked', actor, { key_id: keyId, customer_id: customerId }));
      }).immediate(),
    });
  } finally {
    db.close();
  }
}

async function runInFleet(fleet: FleetConfig, configFile: string, env: NodeJS.ProcessEnv, command: string, run: Run): Promise<void> {
  let url: string;
  try {
    url = fleetDatabaseUrl(fleet, configFile, env);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const db = new FleetDatabase(url, { applicationName: `govgate ${command}`, maxConnections: 1, connectTimeoutMs: 5000 });
  try {
    await migrateCentralSchema(db);
    await run({
      fleet: true,
      create: (customerId, name, actor) => createCentralKey(db, customerId, name, actor),
      list: (customerId) => listCentralKeys(db, customerId),
      revoke: (keyId, actor) => revokeCentralKey(db, keyId, actor),
    });
  } catch (err) {
    if (err instanceof KeyStoreError || err instanceof CliError) throw err;
    // Names the variable, never its value: the URL carries the password.
    throw new CliError(`${command} failed: the fleet database ($${fleet.databaseUrlEnv}): ${describeFleetError(err)}`);
  } finally {
    await db.close().catch(() => {});
  }
}

/** What an action does once its arguments are known to be right. */
type Run = (keys: Keys) => Promise<void>;

function create(args: string[], out: NodeJS.WritableStream): Run {
  const { values } = parseArgs({ args, options: { customer: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' }, actor: { type: 'string' } }, strict: true });
  const customer = values.customer;
  if (!customer) throw new CliError('keys create needs --customer ID', 2);
  const actor = cliActor(values.actor);
  return async (keys) => {
    const created = await keys.create(customer, values.name ?? null, actor);
    if (values.json) {
      out.write(`${JSON.stringify(created)}\n`);
      return;
    }
    out.write(`Created key ${created.id} for customer ${created.customer_id}${created.name ? ` (${created.name})` : ''}.\n`);
    out.write('Copy the secret below now: it is not stored and cannot be shown again.\n');
    out.write(`${created.key}\n`);
  };
}

function list(args: string[], out: NodeJS.WritableStream): Run {
  const { values } = parseArgs({ args, options: { customer: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  return async (keys) => {
    const listed = await keys.list(values.customer);
    if (values.json) {
      out.write(`${JSON.stringify(listed)}\n`);
      return;
    }
    const rows = [['ID', 'CUSTOMER', 'NAME', 'PREFIX', 'CREATED', 'REVOKED'], ...listed.map((k) => [k.id, k.customer_id, k.name ?? '', `${k.prefix}…`, k.created_at, k.revoked_at ?? ''])];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows) out.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
  };
}

function revoke(args: string[], out: NodeJS.WritableStream): Run {
  const { values, positionals } = parseArgs({ args, options: { actor: { type: 'string' } }, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new CliError('keys revoke needs exactly one KEY_ID', 2);
  const id = positionals[0]!;
  const actor = cliActor(values.actor);
  return async (keys) => {
    await keys.revoke(id, actor);
    out.write(keys.fleet
      ? `Revoked key ${id}. Every gateway of the fleet refuses it within 1 second; one cut off from the fleet database, within 1 second of reconnecting.\n`
      : `Revoked key ${id}. A running gateway refuses it within 1 second.\n`);
  };
}
