import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { CHAINS, type ChainName } from '../store/chain.js';
import { openDatabase } from '../store/connection.js';
import { verifyAuditChain, type ChainHead, type ExportedHead } from '../audit/verify-chain.js';
import { CliError } from './cli-error.js';
import { configOf, type ConfigSource } from './config-source.js';

const HEX64 = /^[0-9a-f]{64}$/;

/**
 * `audit verify [--export-head] [--against FILE]`: walks the hash chains.
 * Returns the exit code: 0 intact, 1 with the first bad row named on stdout.
 * `audit explain` and `audit export` live in their own modules.
 */
export async function auditCommand(source: ConfigSource, args: string[], out: NodeJS.WritableStream): Promise<number> {
  const [action, ...rest] = args;
  if (action === 'explain') return (await import('./audit-explain-command.js')).auditExplainCommand(source, rest, out);
  if (action === 'export') return (await import('./audit-export-command.js')).auditExportCommand(source, rest, out);
  if (action !== 'verify') throw new CliError(`unknown audit command "${action ?? ''}" (expected verify, explain or export)`, 2);
  // The central tables are PostgreSQL, which is asynchronous; the local walk stays synchronous.
  if (rest.includes('--fleet')) return await (await import('./audit-fleet-verify.js')).auditFleetVerifyCommand(source, rest, out);
  return auditVerifyCommand(source, rest, out);
}

export function auditVerifyCommand(source: ConfigSource, rest: string[], out: NodeJS.WritableStream): number {
  const { values, positionals } = parseArgs({
    args: rest,
    options: { 'export-head': { type: 'boolean' }, against: { type: 'string' } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length > 0) throw new CliError(`audit verify takes no arguments, got "${positionals[0]}"`, 2);
  const against = values.against === undefined ? undefined : readHead(values.against);
  const config = configOf(source);
  if (!existsSync(config.audit.path)) throw new CliError(`no audit database at ${config.audit.path}`);
  const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, readonly: true });
  try {
    const report = verifyAuditChain(db, { against, retentionDays: config.audit.retentionDays });
    if (!report.ok) {
      const { chain, rowid, id, problem } = report.broken;
      out.write(`audit trail BROKEN: ${chain} row ${rowid}${id ? ` (${id})` : ''} ${problem}\n`);
      return 1;
    }
    if (values['export-head']) {
      out.write(`${JSON.stringify(report.head)}\n`);
      return 0;
    }
    for (const note of report.notes) out.write(`note: ${note}\n`);
    const heads = CHAINS.map((chain) => {
      const h = report.head[chain];
      return h ? `${chain} head: row ${h.rowid} ${h.hash} (${h.created_at} UTC)` : `${chain}: empty`;
    });
    out.write(`${heads.join('\n')}\n`);
    out.write(`audit trail intact: ${report.rows.usagelog} decision rows, ${report.rows.usagelog_outcome} outcome rows and ${report.rows.audit_event} control events verified${against ? ', exported head found unchanged' : ''}\n`);
    return 0;
  } finally {
    db.close();
  }
}

/** A head exported with --export-head: a file, `-` for stdin, or the JSON itself. */
function readHead(source: string): ExportedHead {
  let text: string;
  try {
    text = source.trimStart().startsWith('{') ? source : readFileSync(source === '-' ? 0 : source, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read the exported head ${source}: ${(err as Error).message}`, 2);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError('the exported head is not JSON: pass what `audit verify --export-head` printed', 2);
  }
  if (typeof parsed !== 'object' || parsed === null) throw new CliError('the exported head must be a JSON object', 2);
  const head = {} as Record<ChainName, ChainHead | null>;
  for (const chain of CHAINS) head[chain] = readChainHead(chain, (parsed as Record<string, unknown>)[chain]);
  return head;
}

function readChainHead(chain: ChainName, raw: unknown): ChainHead | null {
  if (raw === null || raw === undefined) return null;
  const h = raw as Partial<Record<keyof ChainHead, unknown>>;
  if (!Number.isSafeInteger(h.rowid) || typeof h.hash !== 'string' || !HEX64.test(h.hash) || typeof h.id !== 'string' || typeof h.created_at !== 'string') {
    throw new CliError(`the exported head's "${chain}" must have rowid, id, hash (64 hex digits) and created_at`, 2);
  }
  return { rowid: h.rowid as number, id: h.id, hash: h.hash, created_at: h.created_at };
}
