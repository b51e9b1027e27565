import { parseArgs } from 'node:util';
import { openDatabase } from '../audit/database.js';
import { createKey, KeyStoreError, listKeys, revokeKey } from '../auth/key-store.js';
import type { GatewayConfig } from '../config/gateway-config.js';
import { CliError } from './cli-error.js';

export function keysCommand(config: GatewayConfig, args: string[], out: NodeJS.WritableStream): void {
  const [action, ...rest] = args;
  const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, retentionDays: config.audit.retentionDays });
  try {
    if (action === 'create') create(db, rest, out);
    else if (action === 'list') list(db, rest, out);
    else if (action === 'revoke') revoke(db, rest, out);
    else throw new CliError(`unknown keys command "${action ?? ''}" (expected create, list or revoke)`, 2);
  } catch (err) {
    if (err instanceof KeyStoreError) throw new CliError(err.message);
    throw err;
  } finally {
    db.close();
  }
}

type Db = ReturnType<typeof openDatabase>;

function create(db: Db, args: string[], out: NodeJS.WritableStream): void {
  const { values } = parseArgs({ args, options: { customer: { type: 'string' }, name: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  if (!values.customer) throw new CliError('keys create needs --customer ID', 2);
  const created = createKey(db, values.customer, values.name ?? null);
  if (values.json) {
    out.write(`${JSON.stringify(created)}\n`);
    return;
  }
  out.write(`Created key ${created.id} for customer ${created.customer_id}${created.name ? ` (${created.name})` : ''}.\n`);
  out.write('Copy the secret below now: it is not stored and cannot be shown again.\n');
  out.write(`${created.key}\n`);
}

function list(db: Db, args: string[], out: NodeJS.WritableStream): void {
  const { values } = parseArgs({ args, options: { customer: { type: 'string' }, json: { type: 'boolean' } }, strict: true });
  const keys = listKeys(db, values.customer);
  if (values.json) {
    out.write(`${JSON.stringify(keys)}\n`);
    return;
  }
  const rows = [['ID', 'CUSTOMER', 'NAME', 'PREFIX', 'CREATED', 'REVOKED'], ...keys.map((k) => [k.id, k.customer_id, k.name ?? '', `${k.prefix}…`, k.created_at, k.revoked_at ?? ''])];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const row of rows) out.write(`${row.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
}

function revoke(db: Db, args: string[], out: NodeJS.WritableStream): void {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new CliError('keys revoke needs exactly one KEY_ID', 2);
  revokeKey(db, positionals[0]!);
  out.write(`Revoked key ${positionals[0]}. A running gateway refuses it within 1 second.\n`);
}
