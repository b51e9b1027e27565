import { createHash } from 'node:crypto';
import { isPlainObject } from '../config/validate.js';
import { ConfigError } from '../config/yaml-source.js';
import { applicableLimits } from '../policy/applicable-limits.js';
import { LIMIT_UNITS, type AppliedLimit, type LimitKind, type LimitScope } from '../policy/limit-kinds.js';
import { compilePolicySource } from '../policy/compile-policy.js';
import { evaluate, unroutable } from '../policy/evaluate.js';
import type { Cause, CompiledPolicy, Decision, PolicyMode } from '../policy/policy-types.js';
import type { MetadataValue, RequestFacts } from '../policy/request-facts.js';
import type { DecisionRow, OutcomeRow } from './audit-writer.js';
import type { PolicyVersionRow } from './control-log.js';

/** A `usagelog` row as stored: rows from before provenance have no policy_hash or causes, rows from before the chain no hashes. */
export type RecordedDecision = Omit<DecisionRow, 'allowed' | 'policy_hash' | 'causes'> & {
  readonly rowid: number;
  readonly allowed: number;
  readonly policy_hash: string | null;
  readonly causes: string | null;
  readonly prev_hash: string | null;
  readonly hash: string | null;
};

/** The policy version a row names, as `policy_version` holds it, with what its text compiles to. */
export interface ExplainedPolicy {
  readonly hash: string;
  readonly loaded_at: string;
  readonly path: string;
  /** SHA-256 of the stored text: equal to `hash` unless the text was edited after it was recorded. */
  readonly text_sha256: string;
  readonly mode: PolicyMode | null;
  readonly block_threshold: number | null;
  /** Why the stored text does not compile today; null when it does. */
  readonly compile_error: string | null;
}

/** Condition values as the matchers see them: a missing metadata field and null match alike. */
export type ShownFact = MetadataValue | null;

export interface ConditionReplay {
  readonly field: string;
  readonly value: ShownFact;
  readonly matched: boolean;
}

export interface RuleReplay {
  readonly id: string;
  readonly description: string | null;
  readonly matched: boolean;
  /** Every condition, not only up to the first that failed, so the table shows each field's part. */
  readonly conditions: readonly ConditionReplay[];
  readonly risk: number;
  readonly blocks: boolean;
}

export interface CustomerReplay {
  /** The `customers:` entry that covers the request: its id, `*`, or null when none does. */
  readonly entry: string | null;
  /** Null when no entry covers the customer, or (model) the request named none. */
  readonly model_allowed: boolean | null;
  readonly operation_allowed: boolean | null;
  readonly max_tokens_cap: number | null;
  readonly max_tokens_over_cap: boolean;
}

export interface LimitReplay {
  readonly kind: LimitKind;
  readonly scope: LimitScope;
  readonly id: string;
  readonly limit: number;
  /** From the row alone (its causes and reason): the limiter's counts are not recorded. */
  readonly refused: boolean;
}

/** The replayed decision as `--json` prints it: the evaluator's, under the row's column name for the score. */
export type ReplayedDecision = Omit<Decision, 'riskScore'> & { readonly risk_score: number };

export interface Replay {
  readonly mode: PolicyMode;
  readonly customer: CustomerReplay;
  readonly rules: readonly RuleReplay[];
  readonly limits: readonly LimitReplay[];
  /** The matched rules' risk before the cap of 100. */
  readonly risk_sum: number;
  readonly block_threshold: number;
  readonly decision: ReplayedDecision;
}

export interface Difference {
  readonly what: string;
  readonly recorded: string;
  readonly replayed: string;
}

/**
 * `replay`: the policy decided alone and the replay must equal the record.
 * `row`: the gateway or a limit decided, which a replay cannot reproduce (the
 * limiter's counts and the providers' load are not recorded); the row explains
 * it and only the policy's part of it is replayed. `unrecorded`: the row is
 * from before provenance and names no policy, so nothing can be replayed.
 */
export type Basis = 'replay' | 'row' | 'unrecorded';

export interface Verdict {
  /** Null only on `unrecorded`. */
  readonly agrees: boolean | null;
  readonly basis: Basis;
  /** False when the gateway refused before evaluating the policy (no provider, an unreadable request): the replay is then for reference only. */
  readonly policy_ran: boolean;
  readonly summary: string;
  readonly differences: readonly Difference[];
}

/** What `audit explain` prints; `--json` prints exactly this object. */
export interface Explanation {
  readonly row: RecordedDecision;
  /** The row's `causes`, parsed; null when absent or not a list of causes. */
  readonly causes: readonly Cause[] | null;
  readonly outcome: OutcomeRow | null;
  readonly policy: ExplainedPolicy | null;
  /** The request facts the policy saw, rebuilt from the row's columns and `meta`. */
  readonly facts: RequestFacts | null;
  readonly replay: Replay | null;
  readonly verdict: Verdict;
}

/** Gateway refusals made after the policy allowed the request (govern.ts, admit-limits.ts). */
const AFTER_ALLOW_CODES: ReadonlySet<string> = new Set(['overloaded', 'limits_unavailable']);
/** Gateway refusals that replace the policy's decision whatever it was (govern.ts `judge`). */
const OVERRIDING_CODES: ReadonlySet<string> = new Set(['mints_credential', 'batch_line_refused', 'batch_line_elsewhere', 'batch_file_unchecked']);
/* Any other `refused` code was raised while reading the request, before the policy ran (govern.ts `recordRefusal`). */

const MONITOR_PREFIX = 'monitor mode, would block: ';

/**
 * Explains one decision row: what was recorded, the policy text it names and
 * that text replayed against the recorded facts, rule by rule, and whether the
 * replay agrees with the record. Pure: the caller reads the rows.
 */
export function explainDecision(row: RecordedDecision, outcome: OutcomeRow | null, version: PolicyVersionRow | null): Explanation {
  const causes = parseCauses(row.causes);
  const factsOrProblem = recordedFacts(row);
  const facts = typeof factsOrProblem === 'string' ? null : factsOrProblem;
  const base = { row, causes, outcome, facts };

  if (row.policy_hash === null) {
    const summary = 'recorded before provenance: the row names no policy version, so it cannot be replayed';
    return { ...base, policy: null, replay: null, verdict: { agrees: null, basis: 'unrecorded', policy_ran: true, summary, differences: [] } };
  }
  if (version === null) {
    const missing = { what: 'policy version', recorded: `policy_hash ${row.policy_hash}`, replayed: 'no policy_version row holds that hash' };
    return { ...base, policy: null, replay: null, verdict: cannotReplay(missing) };
  }

  const differences: Difference[] = [];
  const textHash = createHash('sha256').update(version.text).digest('hex');
  // The text is replayed even when edited, so the output shows what the edit changes; the verdict disagrees either way.
  if (textHash !== row.policy_hash) differences.push({ what: 'policy text', recorded: `sha256 ${row.policy_hash}`, replayed: `the stored text hashes to ${textHash}` });
  let compiled: CompiledPolicy | null = null;
  let compileError: string | null = null;
  try {
    compiled = compilePolicySource(version.path, version.text);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    compileError = err.message;
  }
  const policy: ExplainedPolicy = {
    hash: version.hash, loaded_at: version.loaded_at, path: version.path, text_sha256: textHash,
    mode: compiled?.mode ?? null, block_threshold: compiled?.blockThreshold ?? null, compile_error: compileError,
  };
  if (compiled === null) return { ...base, policy, replay: null, verdict: cannotReplay(...differences, { what: 'policy text', recorded: 'a policy that compiled when loaded', replayed: `does not compile: ${compileError}` }) };
  if (typeof factsOrProblem === 'string') return { ...base, policy, replay: null, verdict: cannotReplay(...differences, { what: 'facts', recorded: factsOrProblem, replayed: 'nothing to replay' }) };

  const replay = replayPolicy(compiled, factsOrProblem, row.reason, causes ?? []);
  if (causes === null) {
    differences.push({ what: 'causes', recorded: row.causes ?? '(none)', replayed: JSON.stringify(replay.decision.causes) });
    return { ...base, policy, replay, verdict: { agrees: false, basis: 'replay', policy_ran: true, summary: 'the row\'s causes are not a list of causes', differences } };
  }
  const judged = judge(row, causes, replay, compiled.mode);
  differences.push(...judged.differences);
  return { ...base, policy, replay, verdict: { agrees: differences.length === 0, basis: judged.basis, policy_ran: judged.policy_ran, summary: judged.summary, differences } };
}

function cannotReplay(...differences: Difference[]): Verdict {
  return { agrees: false, basis: 'replay', policy_ran: true, summary: 'the decision cannot be replayed', differences };
}

function replayPolicy(policy: CompiledPolicy, facts: RequestFacts, recordedReason: string, recorded: readonly Cause[]): Replay {
  const decision = evaluate(policy, facts);
  const rules = policy.rules.map((rule): RuleReplay => {
    const conditions = rule.when.map((cond): ConditionReplay => {
      const value = cond.read(facts);
      return { field: cond.field, value: value ?? null, matched: cond.test(value) };
    });
    return { id: rule.id, description: rule.description, matched: conditions.every((c) => c.matched), conditions, risk: rule.risk, blocks: rule.block };
  });
  const entry = policy.customers.has(facts.customer) ? facts.customer : policy.customers.has('*') ? '*' : null;
  const customer = entry === null ? null : policy.customers.get(entry) ?? null;
  const maxTokens = facts.request.max_tokens;
  const cap = customer?.maxTokens ?? null;
  // Which limit refused is the row's word, not the replay's: its cause names the kind and its reason the scope.
  const refused = (l: AppliedLimit) => recorded.some((c) => c.kind === 'limit' && c.limit === l.kind) && recordedReason.endsWith(limitReason(l));
  return {
    mode: policy.mode,
    customer: {
      entry,
      model_allowed: customer === null || facts.model === null ? null : customer.allowsModel(facts.model),
      operation_allowed: customer === null ? null : customer.allowsOperation(facts.operation),
      max_tokens_cap: cap,
      max_tokens_over_cap: cap !== null && maxTokens !== null && maxTokens > cap,
    },
    rules,
    limits: applicableLimits(policy, facts.customer, facts.key).map((l) => ({ ...l, refused: refused(l) })),
    risk_sum: rules.reduce((sum, r) => (r.matched ? sum + r.risk : sum), 0),
    block_threshold: policy.blockThreshold,
    decision: { allowed: decision.allowed, violates: decision.violates, risk_score: decision.riskScore, reason: decision.reason, causes: decision.causes, rules: decision.rules },
  };
}

/** The limiter's reason for a refusal by this limit (limiter.ts `refusalOf`), so the row's reason names one limit of the policy. */
function limitReason(l: AppliedLimit): string {
  return `limit ${l.kind}: ${l.scope} ${l.id} ${l.limit}/${LIMIT_UNITS[l.kind].per}`;
}

/** The record a decision leaves, as far as the replay can tell it: a reason is known exactly, or only by its start. */
interface Expected {
  readonly allowed: boolean;
  readonly risk_score: number;
  readonly reason: { readonly oneOf: readonly string[] } | { readonly prefix: string };
  readonly causes: readonly Cause[];
}

interface Judged {
  readonly basis: Basis;
  readonly policy_ran: boolean;
  readonly summary: string;
  readonly differences: readonly Difference[];
}

/**
 * Compares the record with what the gateway would have written given the
 * replayed policy decision. A refusal the gateway or a limit made is taken
 * from the row (its cause and its own text); everything the policy
 * contributed to that row must still match the replay.
 */
function judge(row: RecordedDecision, recorded: readonly Cause[], replay: Replay, mode: PolicyMode): Judged {
  const d = replay.decision;
  const gate = recorded.find((c) => c.kind === 'limit' || c.kind === 'no_provider' || c.kind === 'refused');
  if (gate === undefined) {
    const expected: Expected = { allowed: d.allowed, risk_score: d.risk_score, reason: { oneOf: [d.reason] }, causes: d.causes };
    return { basis: 'replay', policy_ran: true, summary: 'decided by the policy: replayed in full', differences: compare(row, recorded, expected) };
  }

  if (gate.kind === 'no_provider') {
    const u = unroutable(row.model);
    const expected: Expected = { allowed: u.allowed, risk_score: u.riskScore, reason: { oneOf: [u.reason] }, causes: u.causes };
    return { basis: 'row', policy_ran: false, summary: `no provider serves model ${row.model}: refused before the policy ran (explained from the row)`, differences: compare(row, recorded, expected) };
  }

  if (gate.kind === 'refused' && !AFTER_ALLOW_CODES.has(gate.code)) {
    if (OVERRIDING_CODES.has(gate.code)) {
      // The gateway's own text replaces the policy's reason; the risk score it keeps is the policy's.
      const expected: Expected = { allowed: false, risk_score: d.risk_score, reason: { prefix: '' }, causes: [gate] };
      return { basis: 'row', policy_ran: true, summary: `refused by the gateway (${gate.code}) whatever the policy decided (explained from the row; the risk score is the policy's)`, differences: compare(row, recorded, expected) };
    }
    const expected: Expected = { allowed: false, risk_score: 0, reason: { prefix: `${gate.code}: ` }, causes: [gate] };
    return { basis: 'row', policy_ran: false, summary: `refused while reading the request (${gate.code}), before the policy ran (explained from the row)`, differences: compare(row, recorded, expected) };
  }

  // A limit, an unreachable limit store or a full provider: the gateway refused after the policy allowed.
  const what = gate.kind === 'limit' ? `limit ${gate.limit}` : `the gateway (${gate.code})`;
  const texts = gate.kind === 'limit' ? replay.limits.filter((l) => l.kind === gate.limit).map(limitReason) : null;
  if (mode === 'monitor' && !(gate.kind === 'refused' && gate.code === 'overloaded')) {
    // Monitor mode records what would have blocked after the policy's own violations (admit-limits.ts `refuse`).
    const lead = d.violates ? `${d.reason}; ` : MONITOR_PREFIX;
    const expected: Expected = {
      allowed: true, risk_score: d.risk_score, causes: [...d.causes, gate],
      reason: texts === null ? { prefix: `${lead}${gate.kind === 'refused' ? `${gate.code}: ` : ''}` } : { oneOf: texts.map((t) => lead + t) },
    };
    return { basis: 'row', policy_ran: true, summary: `monitor mode: ${what} would have refused it (explained from the row; the policy's part replayed)`, differences: compare(row, recorded, expected) };
  }
  const differences: Difference[] = [];
  if (!d.allowed) differences.push({ what: 'policy decision', recorded: `allowed by the policy, then refused by ${what}`, replayed: `refused by the policy: ${d.reason}` });
  const expected: Expected = {
    allowed: false, risk_score: d.risk_score, causes: [gate],
    reason: texts === null ? { prefix: gate.kind === 'refused' ? `${gate.code}: ` : '' } : { oneOf: texts },
  };
  differences.push(...compare(row, recorded, expected));
  return { basis: 'row', policy_ran: true, summary: `refused by ${what} after the policy allowed it (explained from the row; the policy's part replayed)`, differences };
}

function compare(row: RecordedDecision, recorded: readonly Cause[], expected: Expected): Difference[] {
  const out: Difference[] = [];
  if (row.allowed !== (expected.allowed ? 1 : 0)) out.push({ what: 'allowed', recorded: String(row.allowed), replayed: expected.allowed ? '1' : '0' });
  if (row.risk_score !== expected.risk_score) out.push({ what: 'risk_score', recorded: String(row.risk_score), replayed: String(expected.risk_score) });
  const reason = expected.reason;
  if ('oneOf' in reason ? !reason.oneOf.includes(row.reason) : !row.reason.startsWith(reason.prefix) || row.reason.length === reason.prefix.length) {
    const wanted = 'oneOf' in reason ? reason.oneOf.map((r) => JSON.stringify(r)).join(' or ') || '(no limit of that kind applies)' : `${JSON.stringify(reason.prefix)}…`;
    out.push({ what: 'reason', recorded: JSON.stringify(row.reason), replayed: wanted });
  }
  if (!sameCauses(recorded, expected.causes)) out.push({ what: 'causes', recorded: JSON.stringify(recorded), replayed: JSON.stringify(expected.causes) });
  return out;
}

/** Field by field, so a key order changed by hand is not mistaken for a different cause. */
function sameCauses(a: readonly Cause[], b: readonly Cause[]): boolean {
  const key = (c: Cause) => JSON.stringify(Object.entries(c).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)));
  return a.length === b.length && a.every((c, i) => key(c) === key(b[i]!));
}

function parseCauses(text: string | null): readonly Cause[] | null {
  if (text === null) return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (!Array.isArray(parsed) || !parsed.every((c) => isPlainObject(c) && typeof c.kind === 'string')) return null;
  return parsed as Cause[];
}

const isMetadataValue = (v: unknown): v is MetadataValue => typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean';
const isCount = (v: unknown): v is number | null => v === null || typeof v === 'number';

/** The facts the policy saw: the row's columns and the content-free part of `meta` (decision-row.ts); a problem when they are not there. */
function recordedFacts(row: RecordedDecision): RequestFacts | string {
  let meta: unknown;
  try {
    meta = JSON.parse(row.meta);
  } catch {
    return 'meta is not JSON';
  }
  if (!isPlainObject(meta)) return 'meta is not a JSON object';
  const { metadata, stream, max_tokens, messages, tools, body_bytes, provider } = meta;
  if (!isPlainObject(metadata) || !Object.values(metadata).every(isMetadataValue)) return 'meta.metadata is not a mapping of scalars';
  if (typeof stream !== 'boolean' || !isCount(max_tokens) || !isCount(messages) || !isCount(tools) || typeof body_bytes !== 'number') {
    return 'meta lacks the request facts (stream, max_tokens, messages, tools, body_bytes)';
  }
  if (provider !== null && typeof provider !== 'string') return 'meta.provider is neither a name nor null';
  return {
    customer: row.customer_id,
    key: row.api_key_id,
    model: row.model,
    operation: row.operation,
    provider,
    metadata: metadata as Record<string, MetadataValue>,
    request: { stream, max_tokens, messages, tools, body_bytes },
  };
}
