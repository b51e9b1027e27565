import { createHash } from 'node:crypto';

/** The hash chains: one per audit table, each in rowid (insertion) order. */
export type ChainName = 'usagelog' | 'usagelog_outcome' | 'audit_event';
export const CHAINS: readonly ChainName[] = ['usagelog', 'usagelog_outcome', 'audit_event'];
/** The chains retention prunes; the control log is kept for good (docs/audit.md). */
export type PrunedChain = 'usagelog' | 'usagelog_outcome';
export const PRUNED_CHAINS: readonly PrunedChain[] = ['usagelog', 'usagelog_outcome'];

/** `prev_hash` of a chain's very first row. */
export const GENESIS_HASH = '0'.repeat(64);

type ColumnKind = 'text' | 'integer' | 'real';

type Columns = readonly (readonly [string, ColumnKind])[];

const DECISION_V1: Columns = [
  ['id', 'text'], ['customer_id', 'text'], ['api_key_id', 'text'], ['model', 'text'], ['operation', 'text'], ['meta', 'text'],
  ['risk_score', 'real'], ['allowed', 'integer'], ['reason', 'text'], ['created_at', 'text'],
];

/**
 * The columns each row's hash covers, in order: every column of the table
 * except `prev_hash` and `hash` themselves. Changing a list changes every
 * hash, so each list is versioned by the record's first line.
 */
export const CHAIN_COLUMNS: Readonly<Record<ChainName, Columns>> = Object.freeze({
  usagelog: [...DECISION_V1, ['policy_hash', 'text'], ['causes', 'text']],
  usagelog_outcome: [
    ['log_id', 'text'], ['status', 'integer'], ['duration_ms', 'real'], ['upstream_ms', 'real'], ['prompt_tokens', 'integer'],
    ['completion_tokens', 'integer'], ['total_tokens', 'integer'], ['error', 'text'], ['created_at', 'text'],
  ],
  audit_event: [['id', 'text'], ['kind', 'text'], ['actor', 'text'], ['detail', 'text'], ['created_at', 'text']],
});

const V1 = 'govgate-audit-v1\n';
const V2 = 'govgate-audit-v2\n';

/**
 * Which canonical form a row was hashed under. Decision rows written before
 * provenance (no `policy_hash`) keep their v1 record, so a migrated file still
 * verifies; every row written since names its policy and is hashed as v2.
 * Nulling `policy_hash` to pass a row off as v1 changes its record, so it
 * fails its hash like any other edit.
 */
function recordForm(chain: ChainName, row: Readonly<Record<string, unknown>>): { version: string; columns: Columns } {
  if (chain === 'usagelog') return row.policy_hash === null || row.policy_hash === undefined ? { version: V1, columns: DECISION_V1 } : { version: V2, columns: CHAIN_COLUMNS.usagelog };
  return { version: chain === 'audit_event' ? V2 : V1, columns: CHAIN_COLUMNS[chain] };
}

/**
 * The row's canonical record (documented in docs/audit.md so an auditor can
 * recompute it in any language): a version line, then the chain name,
 * `prev_hash` and each column as `<UTF-8 byte length>:<text>\n`, NULL as `-\n`.
 * Integers are decimal; REALs are the 16 lowercase hex digits of their
 * big-endian IEEE-754 binary64, because decimal renderings of floats differ
 * between languages and a hash must not.
 */
export function canonicalRecord(chain: ChainName, prevHash: string, row: object): string {
  const values = row as Readonly<Record<string, unknown>>;
  const { version, columns } = recordForm(chain, values);
  let out = version + field(chain) + field(prevHash);
  for (const [name, kind] of columns) out += field(encode(values[name], kind));
  return out;
}

export function rowHash(chain: ChainName, prevHash: string, row: object): string {
  return createHash('sha256').update(canonicalRecord(chain, prevHash, row)).digest('hex');
}

function field(text: string | null): string {
  return text === null ? '-\n' : `${Buffer.byteLength(text)}:${text}\n`;
}

const realBytes = Buffer.alloc(8);

function encode(value: unknown, kind: ColumnKind): string | null {
  if (value === null || value === undefined) return null;
  if (typeof value === 'number') {
    if (kind === 'real') {
      realBytes.writeDoubleBE(value);
      return realBytes.toString('hex');
    }
    return Number.isInteger(value) ? value.toFixed(0) : String(value);
  }
  // A value of the wrong type can only come from an edit; any rendering of it will fail the hash.
  return String(value);
}
