import type { KeyPath, YamlSource } from '../config/yaml-source.js';
import { describe, isPlainObject } from '../config/validate.js';
import { compileGlob } from './glob.js';
import type { FactValue, MetadataValue, RequestFacts } from './request-facts.js';

type Test = (value: FactValue) => boolean;

const COMPARISONS = {
  gt: (a: number, b: number) => a > b,
  gte: (a: number, b: number) => a >= b,
  lt: (a: number, b: number) => a < b,
  lte: (a: number, b: number) => a <= b,
} as const;
const MATCHER_KEYS = ['not', 'exists', ...Object.keys(COMPARISONS)] as const;

const REQUEST_FIELDS = ['max_tokens', 'stream', 'messages', 'tools', 'body_bytes'] as const;
type RequestField = (typeof REQUEST_FIELDS)[number];
const TOP_FIELDS = ['model', 'operation', 'provider', 'customer', 'key'] as const;
type TopField = (typeof TOP_FIELDS)[number];

/** Compiles a `when` field name into a reader of the request facts. */
export function compileField(src: YamlSource, at: KeyPath, field: string): (facts: RequestFacts) => FactValue {
  if ((TOP_FIELDS as readonly string[]).includes(field)) {
    const name = field as TopField;
    return (facts) => facts[name];
  }
  if (field.startsWith('metadata.') && field.length > 'metadata.'.length) {
    const name = field.slice('metadata.'.length);
    return (facts) => (Object.hasOwn(facts.metadata, name) ? facts.metadata[name] : undefined);
  }
  if (field.startsWith('request.') && (REQUEST_FIELDS as readonly string[]).includes(field.slice('request.'.length))) {
    const name = field.slice('request.'.length) as RequestField;
    return (facts) => facts.request[name];
  }
  return src.fail(at, `unknown field "${field}" (expected ${TOP_FIELDS.join(', ')}, metadata.<name> or request.${REQUEST_FIELDS.join('|')})`);
}

/**
 * Compiles one matcher of the policy language: a scalar (equality, `*` globs on
 * strings), a list (any of), `{not: M}`, `{gt|gte|lt|lte: N}` (several combine
 * as a range) or `{exists: true|false}`. A missing fact matches only
 * `exists: false` and negations.
 */
export function compileMatcher(src: YamlSource, at: KeyPath, spec: unknown): Test {
  if (typeof spec === 'string') {
    const glob = compileGlob(spec);
    return (value) => typeof value === 'string' && glob(value);
  }
  if (typeof spec === 'number' || typeof spec === 'boolean') return (value) => value === spec;
  if (Array.isArray(spec)) {
    if (spec.length === 0) src.fail(at, 'an "any of" list must not be empty');
    const tests = spec.map((item, i) => compileMatcher(src, [...at, i], item));
    return (value) => tests.some((test) => test(value));
  }
  if (!isPlainObject(spec)) return src.fail(at, `is not a matcher: got ${describe(spec)}`);

  const keys = Object.keys(spec);
  if (keys.length === 0) src.fail(at, `an empty mapping is not a matcher (expected one of ${MATCHER_KEYS.join(', ')})`);
  for (const key of keys) {
    if (!(MATCHER_KEYS as readonly string[]).includes(key)) src.fail([...at, key], `unknown matcher "${key}" (expected one of ${MATCHER_KEYS.join(', ')})`);
  }
  if ('not' in spec) {
    if (keys.length > 1) src.fail(at, '"not" must stand alone in its mapping');
    const inner = compileMatcher(src, [...at, 'not'], spec.not);
    return (value) => !inner(value);
  }
  if ('exists' in spec) {
    if (keys.length > 1) src.fail(at, '"exists" must stand alone in its mapping');
    const wanted = spec.exists;
    if (typeof wanted !== 'boolean') src.fail([...at, 'exists'], `must be true or false, got ${describe(wanted)}`);
    return (value) => (value !== undefined && value !== null) === wanted;
  }
  const bounds = keys.map((key) => {
    const bound = spec[key];
    if (typeof bound !== 'number' || !Number.isFinite(bound)) src.fail([...at, key], `must be a number, got ${describe(bound)}`);
    return { compare: COMPARISONS[key as keyof typeof COMPARISONS], bound };
  });
  return (value) => typeof value === 'number' && bounds.every(({ compare, bound }) => compare(value, bound));
}

/**
 * What a matcher can be indexed by: it holds only for one of `values` (by
 * `===`) or for a string that starts with one of `prefixes` (the literal start
 * of a `*` glob). Null when it may hold for anything else: negations, ranges,
 * `exists`, and globs that start with `*`. Takes a spec `compileMatcher`
 * accepted.
 */
export interface MatcherKeys {
  readonly values: readonly MetadataValue[];
  readonly prefixes: readonly string[];
}

export function matcherKeys(spec: unknown): MatcherKeys | null {
  if (typeof spec === 'string') {
    const star = spec.indexOf('*');
    if (star < 0) return { values: [spec], prefixes: [] };
    return star === 0 ? null : { values: [], prefixes: [spec.slice(0, star)] };
  }
  // NaN equals nothing, so a NaN matcher holds for no value at all.
  if (typeof spec === 'number') return { values: Number.isNaN(spec) ? [] : [spec], prefixes: [] };
  if (typeof spec === 'boolean') return { values: [spec], prefixes: [] };
  if (Array.isArray(spec)) {
    const values: MetadataValue[] = [];
    const prefixes: string[] = [];
    for (const item of spec) {
      const keys = matcherKeys(item);
      if (keys === null) return null;
      values.push(...keys.values);
      prefixes.push(...keys.prefixes);
    }
    return { values, prefixes };
  }
  return null;
}
