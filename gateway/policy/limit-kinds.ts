/** The limits a policy may set per customer and per key. */
export const LIMIT_KINDS = ['requests_per_minute', 'tokens_per_minute', 'tokens_per_day', 'tokens_per_month'] as const;
export type LimitKind = (typeof LIMIT_KINDS)[number];

/** The limits set for one customer or one key; a kind not set is not limited. */
export type LimitSet = Readonly<Partial<Record<LimitKind, number>>>;

export type LimitScope = 'customer' | 'key';

/** One limit that applies to a request: whose counter it is and how high it may go. */
export interface AppliedLimit {
  readonly kind: LimitKind;
  readonly scope: LimitScope;
  /** The customer id or the key id. */
  readonly id: string;
  readonly limit: number;
}

/** What a limit counts and over which period, for messages and headers. */
export const LIMIT_UNITS: Readonly<Record<LimitKind, { readonly unit: 'requests' | 'tokens'; readonly per: string }>> = {
  requests_per_minute: { unit: 'requests', per: 'min' },
  tokens_per_minute: { unit: 'tokens', per: 'min' },
  tokens_per_day: { unit: 'tokens', per: 'day' },
  tokens_per_month: { unit: 'tokens', per: 'month' },
};

/** The per-minute limits throttle; the day and month ones are budgets. */
export function isBudget(kind: LimitKind): boolean {
  return kind === 'tokens_per_day' || kind === 'tokens_per_month';
}
