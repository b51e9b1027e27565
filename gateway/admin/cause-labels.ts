import type { Cause } from '../policy/policy-types.js';

/** Rows written before decisions recorded their causes have `causes` NULL. */
export const CAUSE_NOT_RECORDED = 'cause not recorded';

/**
 * What the dashboard calls a cause. Labels hold rule ids, limit kinds and
 * error codes only, never a score or a batch line, so that blocks for the
 * same reason are counted together.
 */
export function causeLabel(cause: Cause): string {
  switch (cause.kind) {
    case 'customer_not_covered':
      return 'customer not covered by the policy';
    case 'allow_list':
      return cause.list === 'models' ? 'model not allowed for customer' : 'operation not allowed for customer';
    case 'max_tokens':
      return 'limit max_tokens';
    case 'rule':
      return `rule ${cause.rule}`;
    case 'risk_threshold':
      return 'risk_score over block_threshold';
    case 'limit':
      return `limit ${cause.limit}`;
    case 'no_provider':
      return 'no provider serves the model';
    case 'refused':
      return `refused: ${cause.code}`;
  }
}

/** The distinct labels of one audit row's `causes` column, so a row counts once per label. */
export function rowCauseLabels(causes: string | null): string[] {
  if (causes === null) return [CAUSE_NOT_RECORDED];
  return [...new Set((JSON.parse(causes) as Cause[]).map(causeLabel))];
}
