/**
 * `node --import tsx test/bench/policy.ts`: evaluate() alone, in ns per
 * decision, on the shipped policy and on a large generated one (5,000
 * customers, 500 rules on `metadata.project` and a model glob, ~660 KB) that
 * an administrator of a large organisation could write. The request mix is the
 * same for both. `npm run bench` measures the same two policies through the
 * whole gateway.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { compilePolicySource } from '../../gateway/policy/compile-policy.js';
import { evaluate } from '../../gateway/policy/evaluate.js';
import type { CompiledPolicy } from '../../gateway/policy/policy-types.js';
import type { MetadataValue, RequestFacts } from '../../gateway/policy/request-facts.js';

const ROOT = path.resolve(import.meta.dirname, '../..');

export const LARGE_CUSTOMERS = 5_000;
export const LARGE_RULES = 500;
/** Model globs of the generated rules, in turn. */
const RULE_MODELS = ['gpt-4*', 'gpt-3.5-*', 'o1-*', 'text-embedding-*'] as const;

export const customerId = (i: number) => `customer-${String(i).padStart(4, '0')}`;
export const projectId = (i: number) => `project-${String(i).padStart(4, '0')}`;

/**
 * `base` (a policy whose text ends in its `rules:` list) grown by
 * LARGE_CUSTOMERS customers, each with its own models, operations and cap,
 * and LARGE_RULES rules, each on one project and a model glob.
 */
export function largePolicy(base: string): string {
  const customers: string[] = [];
  for (let i = 0; i < LARGE_CUSTOMERS; i++) {
    customers.push(`  ${customerId(i)}:
    models: ["gpt-4o*", "text-embedding-3-*"]
    operations: [chat.completions, embeddings]
    max_tokens: ${4096 + (i % 8) * 512}
`);
  }
  const rules: string[] = [];
  for (let i = 0; i < LARGE_RULES; i++) {
    rules.push(`  - id: ${projectId(i)}-${RULE_MODELS[i % RULE_MODELS.length]!.replace(/[*.-]+$/, '')}
    when:
      metadata.project: ${projectId(i)}
      model: "${RULE_MODELS[i % RULE_MODELS.length]}"
    risk: ${1 + (i % 5)}
`);
  }
  if (!/^customers:\n/m.test(base)) throw new Error('largePolicy: the base policy has no top-level "customers:" line');
  return `${base.replace(/^customers:\n/m, () => `customers:\n${customers.join('')}`).trimEnd()}\n${rules.join('')}`;
}

const METADATA: Record<string, MetadataValue> = { data_classification: 'internal', department: 'engineering', region: 'eu-west-1', contains_pii: false };
const MODELS = ['gpt-4o-mini', 'gpt-4o', 'gpt-3.5-turbo', 'o1-mini', 'text-embedding-3-small'] as const;

/** A fixed mix of requests: customers listed and not, projects with rules, without and none. */
export function requestMix(count = 1024): RequestFacts[] {
  return Array.from({ length: count }, (_, i): RequestFacts => {
    const project: Record<string, MetadataValue> = i % 8 === 7 ? {} : { project: projectId((i * 37) % (LARGE_RULES + LARGE_RULES / 4)) };
    const model = MODELS[i % MODELS.length]!;
    return {
      customer: i % 4 === 3 ? 'bench' : customerId((i * 13) % LARGE_CUSTOMERS),
      key: 'key_0000000000000001',
      model,
      operation: model.startsWith('text-embedding') ? 'embeddings' : 'chat.completions',
      provider: 'openai',
      metadata: { ...METADATA, ...project },
      request: { stream: i % 3 === 0, max_tokens: 256 + (i % 7) * 1000, messages: 2, tools: null, body_bytes: 1024 },
    };
  });
}

/** ns per decision over one pass of at least `minMs`, cycling through `mix` (whose length is a power of two). */
function pass(policy: CompiledPolicy, mix: readonly RequestFacts[], minMs: number): number {
  let sink = 0;
  let n = 0;
  const started = process.hrtime.bigint();
  const until = started + BigInt(Math.round(minMs * 1e6));
  let now = started;
  while (now < until) {
    for (let i = 0; i < mix.length; i++) sink += evaluate(policy, mix[i]!).riskScore;
    n += mix.length;
    now = process.hrtime.bigint();
  }
  if (sink < 0) console.log(sink);
  return Number(now - started) / n;
}

function main(): void {
  const shippedText = readFileSync(path.join(ROOT, 'config/policy.yaml'), 'utf8');
  const largeText = largePolicy(shippedText);
  // The same customers without the generated rules: what the 5,000 customers' own allow-lists and caps cost.
  const customersText = largeText.slice(0, largeText.indexOf(`\n  - id: ${projectId(0)}-`) + 1);
  const compileStarted = performance.now();
  const policies: [string, string, CompiledPolicy][] = [
    ['shipped policy', shippedText, compilePolicySource('config/policy.yaml', shippedText)],
    ['shipped + customers', customersText, compilePolicySource('customers-policy.yaml', customersText)],
    ['generated policy', largeText, compilePolicySource('large-policy.yaml', largeText)],
  ];
  const compileMs = performance.now() - compileStarted;
  const mix = requestMix();
  const passMs = Number(process.env.BENCH_PASS_MS ?? 300);
  const passes = Number(process.env.BENCH_PASSES ?? 15);

  // Warm every policy up before timing any, then interleave the passes.
  for (const [, , p] of policies) pass(p, mix, 1000);
  const times: number[][] = policies.map(() => []);
  for (let r = 0; r < passes; r++) policies.forEach(([, , p], k) => times[k]!.push(pass(p, mix, passMs)));
  const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  console.log(`policy micro-bench: evaluate() on ${mix.length} request facts in turn, ${passes} interleaved passes of ${passMs} ms per policy, Node ${process.version}`);
  policies.forEach(([name, text, p], k) => {
    const matched = mix.reduce((n, f) => n + evaluate(p, f).rules.length, 0) / mix.length;
    console.log(`  ${name.padEnd(20)} (${p.customers.size} customers, ${p.rules.length} rules, ${(text.length / 1024).toFixed(1)} KB): ` +
      `${med(times[k]!).toFixed(0)} ns/decision (best ${Math.min(...times[k]!).toFixed(0)}), ${matched.toFixed(2)} rules matched per decision`);
  });
  console.log(`  ratio generated/shipped: ${(med(times[2]!) / med(times[0]!)).toFixed(2)}; generated/(shipped + customers): ${(med(times[2]!) / med(times[1]!)).toFixed(2)}; all three compiled in ${compileMs.toFixed(0)} ms`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) main();
