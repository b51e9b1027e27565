/**
 * What blocked a request, read back from its audit `reason`: the policy joins
 * one violation per rule or limit with "; " (gateway/policy/evaluate.ts), and
 * refusals before the policy ran write "<error code>: …". Rule ids and texts
 * are admin-written and may themselves hold ": " or "; ", so known rule ids are
 * matched first and a split only happens where a new violation starts. Nothing
 * from the request (customer, model) ends up in a label.
 */
const VIOLATION_START = /; (?=rule |customer |limit |risk_score \d|no provider serves model )/;
const REFUSAL_CODE = /^([a-z_]+): /;

export function blockingCauses(reason: string, knownRuleIds: readonly string[]): string[] {
  const labels: string[] = [];
  for (const violation of reason.split(VIOLATION_START)) {
    const label = causeOf(violation, knownRuleIds);
    if (!labels.includes(label)) labels.push(label);
  }
  return labels;
}

function causeOf(violation: string, knownRuleIds: readonly string[]): string {
  if (violation.startsWith('rule ')) {
    const known = knownRuleIds.filter((id) => violation.startsWith(`rule ${id}: `)).sort((a, b) => b.length - a.length)[0];
    if (known !== undefined) return `rule ${known}`;
    const unknown = /^rule (\S+?):(?: |$)/.exec(violation);
    return unknown ? `rule ${unknown[1]}` : 'rule (unknown)';
  }
  if (violation.startsWith('risk_score ')) return 'risk_score over block_threshold';
  if (violation.startsWith('limit ')) return `limit ${/^limit ([a-z_]+)/.exec(violation)?.[1] ?? '(unknown)'}`;
  if (violation.startsWith('customer ')) {
    if (violation.endsWith(' is not covered by the policy')) return 'customer not covered by the policy';
    if (/ may not use model /.test(violation)) return 'model not allowed for customer';
    if (/ may not use operation /.test(violation)) return 'operation not allowed for customer';
  }
  if (violation.startsWith('no provider serves model ')) return 'no provider serves the model';
  const code = REFUSAL_CODE.exec(violation);
  return code ? `refused: ${code[1]}` : 'other';
}
