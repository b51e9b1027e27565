import type { LimitSet } from '../limits/limit-types.js';
import type { StringTest } from './glob.js';
import type { FactValue, RequestFacts } from './request-facts.js';

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

/** A validated policy, frozen; `evaluate` is a pure function of it and the request facts. */
export interface CompiledPolicy {
  readonly version: 1;
  readonly mode: PolicyMode;
  readonly blockThreshold: number;
  readonly customers: ReadonlyMap<string, CustomerPolicy>;
  readonly rules: readonly Rule[];
  /** SHA-256 of the file's bytes, so admins can tell which edit is in force. */
  readonly hash: string;
  readonly source: string;
}

export interface Decision {
  /** Whether the request goes on to the provider (always true in monitor mode). */
  readonly allowed: boolean;
  /** Whether enforce mode would refuse it. */
  readonly violates: boolean;
  readonly riskScore: number;
  readonly reason: string;
  /** Ids of every rule whose `when` matched. */
  readonly rules: readonly string[];
}
