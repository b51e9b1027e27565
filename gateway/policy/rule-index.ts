import type { MatcherKeys } from './matchers.js';
import type { IndexedField, RuleIndex } from './policy-types.js';
import type { FactValue, MetadataValue, RequestFacts } from './request-facts.js';

/** One condition of a rule as the index sees it: its field, how to read it, and what it can be filed under. */
export interface IndexableCondition {
  readonly field: string;
  readonly read: (facts: RequestFacts) => FactValue;
  readonly keys: MatcherKeys | null;
}

/**
 * Files every rule under its most selective indexable condition: exact values
 * before glob starts, fewer keys before more, then the field with more
 * distinct keys in the policy (whose buckets are smaller), then `when` order.
 * A rule only matches when all its conditions hold, so one that holds only for
 * the filed keys is enough to skip the rule for any other value.
 */
export function buildRuleIndex(rules: readonly (readonly IndexableCondition[])[]): RuleIndex {
  const distinct = new Map<string, Set<string>>();
  for (const when of rules) {
    for (const cond of when) {
      if (cond.keys === null) continue;
      let set = distinct.get(cond.field);
      if (!set) distinct.set(cond.field, (set = new Set()));
      for (const v of cond.keys.values) set.add(`${typeof v}:${String(v)}`);
      for (const p of cond.keys.prefixes) set.add(`prefix:${p}`);
    }
  }

  const always: number[] = [];
  const fields = new Map<string, { read: IndexableCondition['read']; values: Map<MetadataValue, number[]>; prefixes: Map<number, Map<string, number[]>> }>();
  const file = <K>(map: Map<K, number[]>, key: K, position: number) => {
    const list = map.get(key);
    // A list may name a value twice (`[a, a]`): a rule is filed once per bucket.
    if (!list) map.set(key, [position]);
    else if (list[list.length - 1] !== position) list.push(position);
  };
  const rank = (keys: MatcherKeys, field: string) => [keys.prefixes.length > 0 ? 1 : 0, keys.values.length + keys.prefixes.length, -distinct.get(field)!.size];
  rules.forEach((when, position) => {
    let best: { field: string; read: IndexableCondition['read']; keys: MatcherKeys; rank: number[] } | null = null;
    for (const { field, read, keys } of when) {
      if (keys === null) continue;
      const r = rank(keys, field);
      if (best === null || isBefore(r, best.rank)) best = { field, read, keys, rank: r };
    }
    if (best === null) {
      always.push(position);
      return;
    }
    let field = fields.get(best.field);
    if (!field) fields.set(best.field, (field = { read: best.read, values: new Map(), prefixes: new Map() }));
    for (const v of best.keys.values) file(field.values, v, position);
    for (const p of best.keys.prefixes) {
      let byStart = field.prefixes.get(p.length);
      if (!byStart) field.prefixes.set(p.length, (byStart = new Map()));
      file(byStart, p, position);
    }
  });

  return {
    always,
    fields: [...fields].map(([name, f]): IndexedField => ({
      field: name,
      read: f.read,
      values: f.values,
      prefixes: [...f.prefixes].sort(([a], [b]) => a - b).map(([length, byStart]) => ({ length, rules: byStart })),
    })),
  };
}

function isBefore(a: readonly number[], b: readonly number[]): boolean {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}

/**
 * The positions of the rules that can match these facts, ascending and each
 * once: `always` and the buckets of every indexed field's value. Every other
 * rule has a condition that fails for these facts.
 */
export function candidateRules(index: RuleIndex, facts: RequestFacts): readonly number[] {
  let lists: (readonly number[])[] | null = null;
  for (const field of index.fields) {
    const value = field.read(facts);
    if (value === undefined || value === null) continue;
    const exact = field.values.get(value);
    if (exact !== undefined) (lists ??= []).push(exact);
    if (typeof value !== 'string') continue;
    for (const { length, rules } of field.prefixes) {
      if (value.length < length) break;
      const started = rules.get(value.slice(0, length));
      if (started !== undefined) (lists ??= []).push(started);
    }
  }
  if (lists === null) return index.always;
  if (index.always.length > 0) lists.push(index.always);
  if (lists.length === 1) return lists[0]!;
  return lists.length === 2 ? merge2(lists[0]!, lists[1]!) : merge(lists);
}

/** `merge` of two lists, the usual case (one bucket and `always`). */
function merge2(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const x = a[i]!;
    const y = b[j]!;
    if (x < y) { out.push(x); i++; }
    else if (y < x) { out.push(y); j++; }
    else { out.push(x); i++; j++; }
  }
  while (i < a.length) out.push(a[i++]!);
  while (j < b.length) out.push(b[j++]!);
  return out;
}

/** Merges ascending lists into one, dropping repeats (a rule may be in a value's bucket and a glob start's). */
function merge(lists: readonly (readonly number[])[]): number[] {
  const out: number[] = [];
  const at = new Array<number>(lists.length).fill(0);
  for (;;) {
    let from = -1;
    let least = Infinity;
    for (let k = 0; k < lists.length; k++) {
      const next = lists[k]![at[k]!];
      if (next !== undefined && next < least) {
        least = next;
        from = k;
      }
    }
    if (from < 0) return out;
    at[from] = at[from]! + 1;
    if (out[out.length - 1] !== least) out.push(least);
  }
}
