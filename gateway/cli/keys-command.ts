import { parseArgs } from 'node:util';
import { openDatabase } from '../audit/database.js';
import { createKey, KeyStoreError, listKeys, revokeKey } from '../auth/key-store.js';
import type { GatewayConfig } from '../config/gateway-config.js';
import { CliError } from './cli-error.js';

const ACTIONS = { create, list, revoke } as const;

/** `keys create|list|revoke`; `keys` alone, or followed only by flags, is `keys list`. */
export function keysCommand(loadConfig: () => GatewayConfig, args: string[], out: NodeJS.WritableStream): void {
  const listing = args[0] === undefined || args[0].startsWith('-');
  const action = listing ? 'list' : args[0]!;
  // Arguments are checked before the database is opened, so a typo neither creates data/audit.db nor needs the configuration.
  if (!Object.hasOwn(ACTIONS, action)) throw new CliError(`unknown keys command "${action}" (expected create, list or revoke)`, 2);
  const run = ACTIONS[action as keyof typeof ACTIONS](listing ? args : args.slice(1), out);
  const config = loadConfig();
  const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, retentionDays: config.audit.retentionDays });
  try {
    run(db);
  } catch (err) {
    if (err instanceof KeyStoreError) throw new CliError(err.message);
    throw err;
  } finally {
    db.close();
  }
}

type Db = ReturnType<typeof openDatabase>;
/** What an action does once its arguments are known to be right. */
type Run = (db: Db) => void;

function create(args: string[], out: NodeJS.WritableStream): Run {
  const { values } = parseArgs({ args, options: { customer: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const customer = values.customer;
  if (!customer) throw new CliError('keys create needs --customer ID', 2);
  return (db) => {
    const created = createKey(db, customer, values.name ?? null);
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
  return (db) => {
    const keys = listKeys(db, values.customer);
    if (values.json) {
      out.write(`${JSON.stringify(keys)}\n`);
      return;
    }
    const rows = [['ID', 'CUSTOMER', 'NAME', 'PREFIX', 'CREATED', 'REVOKED'], ...keys.map((k) => [k.id, k.customer_id, k.name ?? '', `${k.prefix}…`, k.created_at, k.revoked_at ?? ''])];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    for (const row of rows) out.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
  };
}

function revoke(args: string[], out: NodeJS.WritableStream): Run {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new CliError('keys revoke needs exactly one KEY_ID', 2);
  const id = positionals[0]!;
  return (db) => {
    revokeKey(db, id);
    out.write(`Revoked key ${id}. A running gateway refuses it within 1 second.\n`);
  };
}
