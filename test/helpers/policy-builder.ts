import { stringify } from 'yaml';

/**
 * Policy YAML for tests, written from typed data instead of hand-indented
 * text (docs/policy.md is the language). Tests about the YAML itself (syntax
 * errors located as file:line:col, aliases, compile errors naming keys,
 * invalid edits) write their text by hand: a builder only writes valid policies.
 *
 * Builders are immutable, so a base policy can be varied per test:
 *
 *   const base = policy().catchAll().customer('acme', { models: ['gpt-4o-mini'] });
 *   const capped = base.customer('acme', { models: ['gpt-4o-mini'], max_tokens: 100 }).yaml();
 */

/** What a `when` entry may test. */
export type Field =
  | 'model'
  | 'operation'
  | 'provider'
  | 'customer'
  | 'key'
  | `metadata.${string}`
  | `request.${'max_tokens' | 'stream' | 'messages' | 'tools' | 'body_bytes'}`;

type Scalar = string | number | boolean;

/** `{gt: N}`, `{gte: 10, lt: 100}`, …: several in one mapping form a range. */
export interface Comparison {
  readonly gt?: number;
  readonly gte?: number;
  readonly lt?: number;
  readonly lte?: number;
}

/** A scalar (strings may use `*` globs), a list (any of), `{not: M}`, `{exists: B}` or a comparison. */
export type Matcher = Scalar | readonly Matcher[] | { readonly not: Matcher } | { readonly exists: boolean } | Comparison;

export interface Limits {
  readonly requests_per_minute?: number;
  readonly tokens_per_minute?: number;
  readonly tokens_per_day?: number;
  readonly tokens_per_month?: number;
}

export interface CustomerSpec extends Limits {
  readonly models?: readonly string[];
  readonly operations?: readonly string[];
  readonly max_tokens?: number;
  /** Key id → limits of that single key, on top of the customer's. */
  readonly keys?: Readonly<Record<string, Limits>>;
}

export interface RuleSpec {
  readonly id: string;
  readonly description?: string;
  readonly when: Readonly<Partial<Record<Field, Matcher>>>;
  readonly risk?: number;
  readonly action?: 'block';
  readonly reason?: string;
}

/** A policy file's content, keys spelled as the file spells them. */
export interface PolicyDocument {
  readonly version: 1;
  readonly mode: 'enforce' | 'monitor';
  readonly block_threshold: number;
  readonly customers: Readonly<Record<string, CustomerSpec>>;
  readonly rules: readonly RuleSpec[];
}

/** Every model and every operation. */
export const ANYTHING: CustomerSpec = { models: ['*'], operations: ['*'] };

export class PolicyBuilder {
  private constructor(private readonly doc: PolicyDocument) {}

  /** Version 1, enforce, block_threshold 70 (the documented defaults, written out), no customers and no rules. */
  static empty(): PolicyBuilder {
    return new PolicyBuilder({ version: 1, mode: 'enforce', block_threshold: 70, customers: {}, rules: [] });
  }

  mode(mode: PolicyDocument['mode']): PolicyBuilder {
    return new PolicyBuilder({ ...this.doc, mode });
  }

  blockThreshold(threshold: number): PolicyBuilder {
    return new PolicyBuilder({ ...this.doc, block_threshold: threshold });
  }

  /** Adds a customer, or replaces the entry of one already added; without a spec it may use anything. */
  customer(id: string, spec: CustomerSpec = ANYTHING): PolicyBuilder {
    return new PolicyBuilder({ ...this.doc, customers: { ...this.doc.customers, [id]: spec } });
  }

  /** The `"*"` entry, which covers every customer not listed by name. */
  catchAll(spec: CustomerSpec = ANYTHING): PolicyBuilder {
    return this.customer('*', spec);
  }

  /** Appends rules, in the order given (the order rules are evaluated and named in). */
  rule(...rules: RuleSpec[]): PolicyBuilder {
    return new PolicyBuilder({ ...this.doc, rules: [...this.doc.rules, ...rules] });
  }

  toDocument(): PolicyDocument {
    return this.doc;
  }

  yaml(): string {
    // No folding, so a long reason stays on one line; no anchors, so a spec shared by two customers is written out twice, as a person would.
    return stringify(this.doc, { lineWidth: 0, aliasDuplicateObjects: false });
  }
}

export function policy(): PolicyBuilder {
  return PolicyBuilder.empty();
}
