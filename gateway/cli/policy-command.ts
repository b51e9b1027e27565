import path from 'node:path';
import { parseArgs } from 'node:util';
import { displayPath, type GatewayConfig } from '../config/gateway-config.js';
import { evaluate, unroutable } from '../policy/evaluate.js';
import { loadPolicyFile } from '../policy/compile-policy.js';
import type { CompiledPolicy, Decision } from '../policy/policy-types.js';
import type { MetadataValue } from '../policy/request-facts.js';
import { ProviderRouter } from '../proxy/provider-router.js';
import { CliError } from './cli-error.js';

export async function policyCommand(loadConfig: () => GatewayConfig, args: string[], out: NodeJS.WritableStream): Promise<void> {
  const [action, ...rest] = args;
  if (action === 'check') return check(loadConfig, rest, out);
  if (action === 'test') return test(loadConfig, rest, out);
  throw new CliError(`unknown policy command "${action ?? ''}" (expected check or test)`, 2);
}

/** `policy check [FILE]`: with no FILE, the policy the configuration points at. */
function check(loadConfig: () => GatewayConfig, args: string[], out: NodeJS.WritableStream): void {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length > 1) throw new CliError('policy check takes at most one FILE', 2);
  const file = positionals[0] ?? displayPath(loadConfig().policy.path);
  const policy = loadPolicyFile(path.resolve(file), file);
  out.write(`${file}: valid (${policy.mode} mode, ${policy.customers.size} customers, ${policy.rules.length} rules, sha256 ${policy.hash.slice(0, 12)})\n`);
}

async function test(loadConfig: () => GatewayConfig, args: string[], out: NodeJS.WritableStream): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      customer: { type: 'string' },
      model: { type: 'string' },
      operation: { type: 'string' },
      meta: { type: 'string', multiple: true },
      'max-tokens': { type: 'string' },
      stream: { type: 'boolean' },
      key: { type: 'string' },
      json: { type: 'boolean' },
      expect: { type: 'string' },
    },
    strict: true,
  });
  const expect = values.expect;
  if (expect !== undefined && expect !== 'allow' && expect !== 'block') throw new CliError(`--expect must be allow or block, got "${expect}"`, 2);
  for (const required of ['customer', 'model', 'operation'] as const) {
    if (!values[required]) throw new CliError(`policy test needs --${required}`, 2);
  }
  const maxTokens = values['max-tokens'] === undefined ? null : Number(values['max-tokens']);
  if (maxTokens !== null && !Number.isFinite(maxTokens)) throw new CliError('--max-tokens must be a number', 2);

  const meta = parseMeta(values.meta ?? []);
  const config = loadConfig();
  const file = displayPath(config.policy.path);
  const policy = loadPolicyFile(config.policy.path, file);
  const router = new ProviderRouter(config.providers, {});
  const provider = router.forModel(values.model!);
  await router.close();
  const facts = {
    customer: values.customer!,
    key: values.key ?? '',
    model: values.model!,
    operation: values.operation!,
    provider: provider?.name ?? null,
    metadata: meta,
    request: { stream: values.stream ?? false, max_tokens: maxTokens, messages: null, tools: null, body_bytes: 0 },
  };
  const decision = provider ? evaluate(policy, facts) : unroutable(facts.model);
  printDecision(out, values.json ?? false, decision, facts.provider, policy, file);
  const decided = decision.allowed ? 'allow' : 'block';
  // After the decision is printed, so a failing CI step shows the whole reasoning above the one-line verdict.
  if (expect !== undefined && expect !== decided) {
    throw new CliError(`policy test: expected ${expect}, but ${file} decided ${decided} (${decision.reason})`);
  }
}

function printDecision(out: NodeJS.WritableStream, json: boolean, decision: Decision, provider: string | null, policy: CompiledPolicy, file: string): void {
  if (json) {
    out.write(`${JSON.stringify({
      allowed: decision.allowed, would_block: decision.violates, risk_score: decision.riskScore, reason: decision.reason,
      rules: decision.rules, provider, mode: policy.mode, policy: file, policy_hash: policy.hash,
    })}\n`);
    return;
  }
  out.write(`decision:   ${decision.allowed ? 'allow' : 'block'}${decision.allowed && decision.violates ? ' (monitor mode: enforce would block)' : ''}\n`);
  out.write(`risk_score: ${decision.riskScore}\n`);
  out.write(`reason:     ${decision.reason}\n`);
  out.write(`rules:      ${decision.rules.length > 0 ? decision.rules.join(', ') : '(none matched)'}\n`);
  out.write(`provider:   ${provider ?? '(none)'}\n`);
  out.write(`policy:     ${file} (${policy.mode}, sha256 ${policy.hash.slice(0, 12)})\n`);
}

/** `--meta k=v`: true/false become booleans and numerals numbers, as they would in the JSON header. */
function parseMeta(pairs: string[]): Record<string, MetadataValue> {
  const meta: Record<string, MetadataValue> = Object.create(null);
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliError(`--meta takes key=value, got "${pair}"`, 2);
    const raw = pair.slice(eq + 1);
    meta[pair.slice(0, eq)] = raw === 'true' ? true : raw === 'false' ? false : raw !== '' && Number.isFinite(Number(raw)) ? Number(raw) : raw;
  }
  return meta;
}

