import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { OutcomeRow } from '../audit/audit-writer.js';
import type { PolicyVersionRow } from '../audit/control-log.js';
import { openDatabase } from '../store/connection.js';
import {
  explainDecision,
  type CustomerReplay,
  type ExplainedPolicy,
  type Explanation,
  type LimitReplay,
  type RecordedDecision,
  type Replay,
  type RuleReplay,
  type ShownFact,
  type Verdict,
} from '../audit/explain-decision.js';
import { LIMIT_UNITS } from '../policy/limit-kinds.js';
import type { Cause } from '../policy/policy-types.js';
import type { RequestFacts } from '../policy/request-facts.js';
import { CliError } from './cli-error.js';
import { configOf, type ConfigSource } from './config-source.js';

/**
 * `audit explain LOG_ID [--json]`: one decision row, its outcome and the policy
 * version that decided it, replayed. Returns the exit code: 0 when the replay
 * agrees (or the row explains a refusal the policy did not make, or the row
 * predates provenance and nothing can be replayed), 1 when it disagrees or no
 * row has that id.
 */
export function auditExplainCommand(source: ConfigSource, args: string[], out: NodeJS.WritableStream): number {
  const { values, positionals } = parseArgs({ args, options: { json: { type: 'boolean' } }, allowPositionals: true, strict: true });
  if (positionals.length === 0) throw new CliError('audit explain needs a LOG_ID (a response\'s x-governance-log-id, or usagelog.id)', 2);
  if (positionals.length > 1) throw new CliError(`audit explain takes one LOG_ID, got ${positionals.length}`, 2);
  const logId = positionals[0]!;
  const config = configOf(source);
  if (!existsSync(config.audit.path)) throw new CliError(`no audit database at ${config.audit.path}`);
  const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, readonly: true });
  let explanation: Explanation;
  try {
    // One read transaction: the row, its outcome and its policy text as of one moment of a running gateway.
    explanation = db.transaction(() => {
      const raw = db.prepare('SELECT rowid, * FROM usagelog WHERE id = ?').get(logId) as (Omit<RecordedDecision, 'policy_hash' | 'causes'> & Partial<RecordedDecision>) | undefined;
      if (raw === undefined) throw new CliError(`no decision row has log id ${logId} (never recorded, or pruned by retention)`);
      // A database the gateway has not migrated yet has no provenance columns: its rows read as from before provenance.
      const row: RecordedDecision = { ...raw, policy_hash: raw.policy_hash ?? null, causes: raw.causes ?? null };
      const outcome = (db.prepare('SELECT log_id, status, duration_ms, upstream_ms, prompt_tokens, completion_tokens, total_tokens, error, created_at FROM usagelog_outcome WHERE log_id = ?').get(logId) as OutcomeRow | undefined) ?? null;
      const version = row.policy_hash === null ? null : (db.prepare('SELECT hash, loaded_at, path, text FROM policy_version WHERE hash = ?').get(row.policy_hash) as PolicyVersionRow | undefined) ?? null;
      return explainDecision(row, outcome, version);
    })();
  } finally {
    db.close();
  }
  out.write(values.json ? `${JSON.stringify(explanation)}\n` : render(explanation));
  return explanation.verdict.agrees === false ? 1 : 0;
}

const LABEL = 13;

function kv(label: string, value: string): string {
  return `  ${label.padEnd(LABEL)}${value}\n`;
}

function fact(value: ShownFact | undefined): string {
  return value === null || value === undefined ? '-' : JSON.stringify(value);
}

function count(value: number | null): string {
  return value === null ? '-' : String(value);
}

function yesNo(value: boolean | null): string {
  return value === null ? '-' : value ? 'yes' : 'no';
}

function formatCause(c: Cause): string {
  switch (c.kind) {
    case 'customer_not_covered': return 'customer not covered';
    case 'allow_list': return `allow-list ${c.list}`;
    case 'max_tokens': return `max_tokens over cap ${c.cap}`;
    case 'rule': return `rule ${c.rule}`;
    case 'risk_threshold': return `risk_score ${c.score} >= threshold ${c.threshold}`;
    case 'limit': return `limit ${c.limit}`;
    case 'no_provider': return 'no provider';
    case 'refused': return `refused by the gateway: ${c.code}${c.line === undefined ? '' : ` (line ${c.line})`}`;
  }
}

function causes(list: readonly Cause[] | null, raw: string | null): string {
  if (list === null) return raw === null ? '(not recorded)' : `(unreadable: ${raw})`;
  return list.length === 0 ? '(none)' : list.map(formatCause).join('; ');
}

/** The human form: aligned sections, then the verdict as the last line. Content-free like the row it reads. */
function render(e: Explanation): string {
  let s = decisionSection(e.row, e.causes) + outcomeSection(e.outcome) + policySection(e.policy, e.row.policy_hash) + factsSection(e.facts);
  // Without the facts there is nothing the policy could be replayed against.
  if (e.replay !== null && e.facts !== null) s += replaySections(e.replay, e.facts, e.verdict.policy_ran);
  return s + verdictSection(e.verdict);
}

function decisionSection(row: RecordedDecision, parsedCauses: readonly Cause[] | null): string {
  let s = 'decision\n';
  s += kv('log id', row.id);
  s += kv('row', `${row.rowid}${row.hash === null ? '' : ` (hash ${row.hash})`}`);
  s += kv('created_at', `${row.created_at} UTC`);
  s += kv('customer', row.customer_id);
  s += kv('key', row.api_key_id);
  s += kv('model', row.model ?? '-');
  s += kv('operation', row.operation);
  s += kv('allowed', row.allowed === 1 ? 'yes' : 'no');
  s += kv('risk_score', String(row.risk_score));
  s += kv('reason', row.reason);
  s += kv('causes', causes(parsedCauses, row.causes));
  return s;
}

function outcomeSection(outcome: OutcomeRow | null): string {
  let s = '\noutcome\n';
  if (outcome === null) return `${s}  (none recorded: refused, still running, or lost)\n`;
  s += kv('status', count(outcome.status));
  s += kv('duration', `${outcome.duration_ms} ms${outcome.upstream_ms === null ? '' : ` (upstream ${outcome.upstream_ms} ms)`}`);
  s += kv('tokens', `prompt ${count(outcome.prompt_tokens)}, completion ${count(outcome.completion_tokens)}, total ${count(outcome.total_tokens)}`);
  s += kv('error', outcome.error ?? '-');
  return s;
}

function policySection(policy: ExplainedPolicy | null, recordedHash: string | null): string {
  let s = '\npolicy version\n';
  if (policy === null) return s + (recordedHash === null ? '  (not recorded: the row predates provenance)\n' : `  ${recordedHash}: no policy_version row holds it\n`);
  s += kv('hash', policy.hash);
  s += kv('loaded_at', `${policy.loaded_at} UTC`);
  s += kv('path', policy.path);
  s += kv('text', policy.text_sha256 === policy.hash ? 'matches its hash' : `EDITED: now hashes to ${policy.text_sha256}`);
  if (policy.compile_error !== null) s += kv('compiles', `no: ${policy.compile_error}`);
  else s += kv('mode', `${policy.mode}, block_threshold ${policy.block_threshold}`);
  return s;
}

function factsSection(facts: RequestFacts | null): string {
  let s = '\nfacts\n';
  if (facts === null) return `${s}  (meta does not hold the request facts)\n`;
  s += kv('provider', facts.provider ?? '-');
  const meta = Object.entries(facts.metadata);
  s += kv('metadata', meta.length === 0 ? '(none)' : meta.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', '));
  const r = facts.request;
  s += kv('request', `stream ${r.stream}, max_tokens ${count(r.max_tokens)}, messages ${count(r.messages)}, tools ${count(r.tools)}, body_bytes ${r.body_bytes}`);
  return s;
}

function replaySections(replay: Replay, facts: RequestFacts, policyRan: boolean): string {
  return customerSection(replay.customer, facts) + rulesSection(replay.rules) + limitsSection(replay.limits) + replayedDecisionSection(replay, policyRan);
}

function customerSection(c: CustomerReplay, facts: RequestFacts): string {
  let s = `\ncustomer ${c.entry === null ? '(not covered by the policy)' : c.entry === '*' ? '"*"' : c.entry}\n`;
  if (c.entry === null) return s;
  s += kv('models', `${facts.model ?? '-'}: ${c.model_allowed === null ? 'no model named' : c.model_allowed ? 'allowed' : 'NOT allowed'}`);
  s += kv('operations', `${facts.operation}: ${c.operation_allowed ? 'allowed' : 'NOT allowed'}`);
  s += kv('max_tokens', `${count(facts.request.max_tokens)}, ${c.max_tokens_cap === null ? 'no cap' : `cap ${c.max_tokens_cap}${c.max_tokens_over_cap ? ': OVER' : ''}`}`);
  return s;
}

/** One row per rule, its conditions indented under it, in columns as wide as the longest id or field. */
function rulesSection(rules: readonly RuleReplay[]): string {
  let s = '\nrules\n';
  if (rules.length === 0) return `${s}  (none)\n`;
  const width = Math.max(4, ...rules.map((r) => r.id.length), ...rules.flatMap((r) => r.conditions.map((cond) => cond.field.length + 2)));
  s += `  ${'RULE'.padEnd(width)}  MATCHED  RISK  BLOCKS\n`;
  for (const r of rules) {
    s += `  ${r.id.padEnd(width)}  ${yesNo(r.matched).padEnd(7)}  ${String(r.risk).padStart(4)}  ${yesNo(r.blocks)}\n`;
    for (const cond of r.conditions) s += `    ${cond.field.padEnd(width - 2)}  ${yesNo(cond.matched).padEnd(7)}  = ${fact(cond.value)}\n`;
  }
  return s;
}

function limitsSection(limits: readonly LimitReplay[]): string {
  let s = '\nlimits\n';
  if (limits.length === 0) return `${s}  (none apply)\n`;
  const width = Math.max(...limits.map((l) => l.kind.length));
  for (const l of limits) {
    s += `  ${l.kind.padEnd(width)}  ${`${l.scope} ${l.id}`}  ${l.limit}/${LIMIT_UNITS[l.kind].per}${l.refused ? '  refused it (per the row)' : ''}\n`;
  }
  return s;
}

function replayedDecisionSection(replay: Replay, policyRan: boolean): string {
  const d = replay.decision;
  let s = `\nreplay${policyRan ? '' : ' (for reference: the gateway refused before the policy ran)'}\n`;
  s += kv('risk', `sum ${replay.risk_sum}, risk_score ${d.risk_score} vs block_threshold ${replay.block_threshold}: ${d.risk_score >= replay.block_threshold ? 'reaches it' : 'below'}`);
  s += kv('mode', replay.mode);
  s += kv('allowed', yesNo(d.allowed) + (d.allowed && d.violates ? ' (monitor mode: enforce would block)' : ''));
  s += kv('risk_score', String(d.risk_score));
  s += kv('reason', d.reason);
  s += kv('causes', causes(d.causes, null));
  return s;
}

function verdictSection(verdict: Verdict): string {
  let s = '\nverdict\n';
  s += kv('basis', verdict.summary);
  if (verdict.agrees === null) s += 'not replayed: the row was recorded before provenance and names no policy version\n';
  else if (verdict.agrees) s += `replay agrees with the recorded decision${verdict.basis === 'row' ? ' (explained from the row)' : ''}\n`;
  else for (const d of verdict.differences) s += `replay DISAGREES on ${d.what}: recorded ${d.recorded}, replayed ${d.replayed}\n`;
  return s;
}
