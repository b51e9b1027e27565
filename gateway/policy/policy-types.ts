import type { LimitKind, LimitSet } from './limit-kinds.js';
import type { StringTest } from './glob.js';
import type { FactValue, MetadataValue, RequestFacts } from './request-facts.js';

export type PolicyMode = 'enforce' | 'monitor';

export interface CustomerPolicy {
  readonly id: string;
  readonly allowsModel: StringTest;
  readonly allowsOperation: StringTest;
  readonly maxTokens: number | null;
  /** Rate limits and token budgets; under `"*"` each customer it covers gets its own counters. */
  readonly limits: LimitSet;
  /** Limits of single keys (by key id), applied on top of the customer's. */
  readonly keyLimits: ReadonlyMap<string, LimitSet>;
}

export interface Condition {
  readonly field: string;
  readonly read: (facts: RequestFacts) => FactValue;
  readonly test: (value: FactValue) => boolean;
}

export interface Rule {
  readonly id: string;
  readonly description: string | null;
  readonly when: readonly Condition[];
  readonly risk: number;
  readonly block: boolean;
  readonly reason: string | null;
}

/**
 * The rules grouped at compile time so that a request visits only those that
 * can match it. Each rule is filed under at most one of its conditions, one
 * that holds only for listed values (an exact string, number or boolean, or a
 * list of them) or for strings with a literal start (`gpt-4*`); a rule with no
 * such condition is in `always`. Rules are named by their position in
 * `CompiledPolicy.rules`, and every list is in ascending order.
 */
export interface RuleIndex {
  /** Rules visited for every request. */
  readonly always: readonly number[];
  /** One entry per field that files at least one rule. */
  readonly fields: readonly IndexedField[];
}

export interface IndexedField {
  readonly field: string;
  readonly read: (facts: RequestFacts) => FactValue;
  /** Fact value → the rules filed under it (`===`, so `1`, `"1"` and `true` are apart). */
  readonly values: ReadonlyMap<MetadataValue, readonly number[]>;
  /** Rules filed under a glob's literal start, by its length: a string fact visits `rules.get(fact.slice(0, length))`. */
  readonly prefixes: readonly { readonly length: number; readonly rules: ReadonlyMap<string, readonly number[]> }[];
}

/** A validated policy, frozen; `evaluate` is a pure function of it and the request facts. */
export interface CompiledPolicy {
  readonly version: 1;
  readonly mode: PolicyMode;
  readonly blockThreshold: number;
  readonly customers: ReadonlyMap<string, CustomerPolicy>;
  readonly rules: readonly Rule[];
  /** Which rules a request needs to test; `evaluate` tests only those, in the order of `rules`. */
  readonly ruleIndex: RuleIndex;
  /** SHA-256 of the file's text, so admins can tell which edit is in force; audit rows name it as `policy_hash`. */
  readonly hash: string;
  readonly source: string;
  /** The file's text, kept as `policy_version` so a decision can be replayed after the file changed. */
  readonly text: string;
}

/**
 * Why a request was refused (or would be, in monitor mode), structured for the
 * audit row's `causes`. Names rule ids, limit kinds and which allow-list
 * refused; never the request's own values, which the row's columns hold.
 */
export type Cause =
  | { readonly kind: 'customer_not_covered' }
  | { readonly kind: 'allow_list'; readonly list: 'models' | 'operations' }
  | { readonly kind: 'max_tokens'; readonly cap: number }
  | { readonly kind: 'rule'; readonly rule: string }
  | { readonly kind: 'risk_threshold'; readonly score: number; readonly threshold: number }
  | { readonly kind: 'limit'; readonly limit: LimitKind }
  | { readonly kind: 'no_provider' }
  /** The gateway's own refusals, which no policy can lift, by error code (and batch file line, for a batch upload). */
  | { readonly kind: 'refused'; readonly code: string; readonly line?: number };

export interface Decision {
  /** Whether the request goes on to the provider (always true in monitor mode). */
  readonly allowed: boolean;
  /** Whether enforce mode would refuse it. */
  readonly violates: boolean;
  readonly riskScore: number;
  readonly reason: string;
  /** Ids of every rule whose `when` matched. */
  readonly rules: readonly string[];
  /** One per violation in `reason`, in the same order. */
  readonly causes: readonly Cause[];
}
