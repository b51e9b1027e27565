import { createHash } from 'node:crypto';
import { YamlSource } from '../config/yaml-source.js';
import { deepFreeze } from '../config/deep-freeze.js';
import { isPlainObject, readEnum, readInteger, readMap, readNumber, readString, readStringList } from '../config/validate.js';
import { compileGlobList } from './glob.js';
import { compileField, compileMatcher, matcherKeys } from './matchers.js';
import { buildRuleIndex, type IndexableCondition } from './rule-index.js';
import { CUSTOMER_LIMIT_KEYS, readKeyLimits, readLimitSet } from './compile-limits.js';
import type { CompiledPolicy, CustomerPolicy, Rule } from './policy-types.js';

const ROOT_KEYS = ['version', 'mode', 'block_threshold', 'customers', 'rules'] as const;
const CUSTOMER_KEYS = ['models', 'operations', 'max_tokens', ...CUSTOMER_LIMIT_KEYS] as const;
const RULE_KEYS = ['id', 'description', 'when', 'risk', 'action', 'reason'] as const;

/** Reads, validates and compiles a policy file. Throws ConfigError with file:line:col. */
export function loadPolicyFile(file: string, displayName = file): CompiledPolicy {
  return compilePolicy(YamlSource.readFile(file, displayName));
}

export function compilePolicySource(displayName: string, text: string): CompiledPolicy {
  return compilePolicy(YamlSource.parse(displayName, text));
}

function compilePolicy(src: YamlSource): CompiledPolicy {
  const root = readMap(src, [], src.value(), ROOT_KEYS);
  if (root.version !== 1) src.fail(['version'], `must be 1, got ${root.version === undefined ? 'nothing' : JSON.stringify(root.version)}`);

  const customersRaw = readMap(src, ['customers'], root.customers, null);
  const customers = new Map<string, CustomerPolicy>();
  for (const [id, raw] of Object.entries(customersRaw)) {
    const at = ['customers', id];
    const c = readMap(src, at, raw ?? {}, CUSTOMER_KEYS);
    customers.set(id, {
      id,
      allowsModel: compileGlobList(readStringList(src, [...at, 'models'], c.models, ['*'])),
      allowsOperation: compileGlobList(readStringList(src, [...at, 'operations'], c.operations, ['*'])),
      maxTokens: c.max_tokens === undefined ? null : readInteger(src, [...at, 'max_tokens'], c.max_tokens, { min: 1, max: 100_000_000 }),
      limits: readLimitSet(src, at, c),
      keyLimits: readKeyLimits(src, [...at, 'keys'], c.keys),
    });
  }

  if (root.rules !== undefined && root.rules !== null && !Array.isArray(root.rules)) src.fail(['rules'], 'must be a list of rules');
  const rulesRaw: unknown[] = Array.isArray(root.rules) ? root.rules : [];
  const seen = new Set<string>();
  const indexable: IndexableCondition[][] = [];
  const rules = rulesRaw.map((raw, i): Rule => {
    const at = ['rules', i];
    const r = readMap(src, at, raw, RULE_KEYS);
    const id = readString(src, [...at, 'id'], r.id);
    if (seen.has(id)) src.fail([...at, 'id'], `duplicate rule id "${id}"`);
    seen.add(id);
    if (!isPlainObject(r.when) || Object.keys(r.when).length === 0) src.fail([...at, 'when'], 'must be a non-empty mapping of field: matcher');
    const specs = Object.entries(r.when);
    const when = specs.map(([field, spec]) => ({
      field,
      read: compileField(src, [...at, 'when', field], field),
      test: compileMatcher(src, [...at, 'when', field], spec),
    }));
    indexable.push(when.map(({ field, read }, j) => ({ field, read, keys: matcherKeys(specs[j]![1]) })));
    const action = r.action === undefined ? null : readEnum(src, [...at, 'action'], r.action, ['block'] as const);
    return {
      id,
      description: r.description === undefined ? null : readString(src, [...at, 'description'], r.description),
      when,
      risk: readNumber(src, [...at, 'risk'], r.risk, { min: 0, max: 100 }, 0),
      block: action === 'block',
      reason: r.reason === undefined ? null : readString(src, [...at, 'reason'], r.reason),
    };
  });

  return deepFreeze({
    version: 1 as const,
    mode: readEnum(src, ['mode'], root.mode, ['enforce', 'monitor'] as const, 'enforce'),
    blockThreshold: readNumber(src, ['block_threshold'], root.block_threshold, { min: 1, max: 100 }, 70),
    customers,
    rules,
    ruleIndex: buildRuleIndex(indexable),
    hash: createHash('sha256').update(src.text).digest('hex'),
    source: src.file,
    text: src.text,
  });
}
