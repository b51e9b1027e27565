import { createHash } from 'node:crypto';

/** The two hash chains: one per audit table, each in rowid (insertion) order. */
export type ChainName = 'usagelog' | 'usagelog_outcome';
export const CHAINS: readonly ChainName[] = ['usagelog', 'usagelog_outcome'];

/** `prev_hash` of a chain's very first row. */
export const GENESIS_HASH = '0'.repeat(64);

type ColumnKind = 'text' | 'integer' | 'real';

/**
 * The columns each row's hash covers, in order: every column of the table
 * except `prev_hash` and `hash` themselves. Changing this list changes every
 * hash, so it is versioned by the record's first line.
 */
export const CHAIN_COLUMNS: Readonly<Record<ChainName, readonly (readonly [string, ColumnKind])[]>> = Object.freeze({
  usagelog: [
    ['id', 'text'], ['customer_id', 'text'], ['api_key_id', 'text'], ['model', 'text'], ['operation', 'text'], ['meta', 'text'],
    ['risk_score', 'real'], ['allowed', 'integer'], ['reason', 'text'], ['created_at', 'text'],
  ],
  usagelog_outcome: [
    ['log_id', 'text'], ['status', 'integer'], ['duration_ms', 'real'], ['upstream_ms', 'real'], ['prompt_tokens', 'integer'],
    ['completion_tokens', 'integer'], ['total_tokens', 'integer'], ['error', 'text'], ['created_at', 'text'],
  ],
});

const RECORD_VERSION = 'govgate-audit-v1\n';

/**
 * The row's canonical record (documented in docs/audit.md so an auditor can
 * recompute it in any language): a version line, then the chain name,
 * `prev_hash` and each column as `<UTF-8 byte length>:<text>\n`, NULL as `-\n`.
 * Integers are decimal; REALs are the 16 lowercase hex digits of their
 * big-endian IEEE-754 binary64, because decimal renderings of floats differ
 * between languages and a hash must not.
 */
export function canonicalRecord(chain: ChainName, prevHash: string, row: object): string {
  let out = RECORD_VERSION + field(chain) + field(prevHash);
  const values = row as Readonly<Record<string, unknown>>;
  for (const [name, kind] of CHAIN_COLUMNS[chain]) out += field(encode(values[name], kind));
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
