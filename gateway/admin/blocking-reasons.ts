import { ruleViolation } from '../policy/evaluate.js';
import type { Rule } from '../policy/policy-types.js';

/** A group of blocked decisions with the same reason, and the request columns the reason quotes. */
export interface BlockedReason {
  readonly reason: string;
  readonly customer_id: string;
  readonly model: string | null;
  readonly operation: string;
}

const REFUSAL = /^([a-z_]+): /;
const LIMIT = /^limit ([a-z_]+): /;
const RULE_ID = /^rule (\S+?): /;
/** Where the next violation starts after text this parser cannot bound exactly. */
const NEXT_VIOLATION = /; (?=rule |limit |risk_score \d)/;

/**
 * What blocked a request, read back from its audit `reason`, which the policy
 * writes as one violation per rule or limit joined by "; " (evaluate.ts).
 * Model, operation and rule texts may themselves hold ": " or "; " and the
 * first two are the client's, so violations are matched against the exact
 * text they must have (from the row's own columns and the policy's rules),
 * never split blindly; a client cannot add a cause by naming a model
 * "x; rule y: z". Labels hold rule ids and limit names only, nothing from the request.
 */
export function blockingCauses(row: BlockedReason, rules: readonly Pick<Rule, 'id' | 'reason' | 'description'>[]): string[] {
  const { reason, customer_id: customer, model, operation } = row;
  if (reason.startsWith('no provider serves model ')) return ['no provider serves the model'];
  const exact: [string, string][] = [
    [`customer ${customer} is not covered by the policy`, 'customer not covered by the policy'],
    [`customer ${customer} may not use model ${model}`, 'model not allowed for customer'],
    [`customer ${customer} may not use operation ${operation}`, 'operation not allowed for customer'],
    // Longest first, so a rule whose id and text extend another's is matched whole.
    ...rules.map((r): [string, string] => [ruleViolation(r), `rule ${r.id}`]).sort((a, b) => b[0].length - a[0].length),
  ];
  const labels = new Set<string>();
  let rest = reason;
  while (rest !== '') {
    let consumed = exact.find(([text]) => rest.startsWith(text) && (rest.length === text.length || rest.startsWith('; ', text.length)));
    if (!consumed) consumed = bounded(rest, customer);
    if (!consumed) {
      const refusal = labels.size === 0 ? REFUSAL.exec(rest) : null;
      labels.add(refusal ? `refused: ${refusal[1]}` : 'other');
      break;
    }
    labels.add(consumed[1]);
    rest = rest.slice(consumed[0].length).replace(/^; /, '');
  }
  return [...labels];
}

/** Violations whose text is not known in full: a limit, a rule no longer in the policy, the risk threshold (always last). */
function bounded(rest: string, customer: string): [string, string] | undefined {
  if (rest.startsWith('risk_score ')) return [rest, 'risk_score over block_threshold'];
  const limit = LIMIT.exec(rest);
  if (limit) {
    const tail = ` for customer ${customer}`;
    const end = rest.indexOf(tail);
    return [end === -1 ? untilNext(rest) : rest.slice(0, end + tail.length), `limit ${limit[1]}`];
  }
  const rule = RULE_ID.exec(rest);
  if (rule) return [untilNext(rest), `rule ${rule[1]}`];
  return undefined;
}

function untilNext(rest: string): string {
  const next = NEXT_VIOLATION.exec(rest);
  return next ? rest.slice(0, next.index) : rest;
}
