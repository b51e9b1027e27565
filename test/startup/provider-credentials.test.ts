import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import type { ProviderConfig } from '../../gateway/config/gateway-config.js';
import { credentialProblem } from '../../gateway/proxy/provider-router.js';
import { FIXTURE_POLICY, makeGatewayDir, startHarness, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startServe } from '../helpers/cli.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';

let upstream: MockUpstream;

test.before(async () => {
  upstream = await startMockUpstream();
});

test.after.always(async () => {
  await upstream?.close();
});

const GATEWAY_KEY = `gg_${'A'.repeat(38)}`;
const MISSING = "requests to provider openai will be sent without a key and the provider will answer 401; set OPENAI_API_KEY in the gateway's environment";

function provider(apiKeyEnv: string | null): ProviderConfig {
  return { name: 'openai', apiKeyEnv } as unknown as ProviderConfig;
}

interface WarnLine {
  level: number;
  msg: string;
  provider?: string;
  env?: string;
}

function warnings(logs: readonly string[]): WarnLine[] {
  return logs.map((l) => JSON.parse(l) as WarnLine).filter((l) => l.level === 40);
}

test('credentialProblem: unset, empty and gg_ values are problems; a provider key and a keyless provider are not', (t) => {
  t.is(credentialProblem(provider('OPENAI_API_KEY'), {})?.message, MISSING);
  t.is(credentialProblem(provider('OPENAI_API_KEY'), { OPENAI_API_KEY: '' })?.kind, 'missing');
  const gg = credentialProblem(provider('OPENAI_API_KEY'), { OPENAI_API_KEY: GATEWAY_KEY });
  t.is(gg?.kind, 'gateway_key');
  t.true(gg?.message.startsWith("OPENAI_API_KEY holds a gateway key (gg_…), not the provider's key: the provider will refuse it; the gateway key goes in the client's environment"));
  t.false(gg?.message.includes(GATEWAY_KEY), 'the secret is never in the message');
  t.is(credentialProblem(provider('OPENAI_API_KEY'), { OPENAI_API_KEY: 'sk-real' }), null);
  t.is(credentialProblem(provider(null), {}), null);
});

test('startGateway logs one warn line when the provider variable is unset', async (t) => {
  const gw = await startHarness(upstream.url, { env: {} });
  try {
    const lines = warnings(gw.logs).filter((l) => l.env === 'OPENAI_API_KEY');
    t.is(lines.length, 1);
    t.is(lines[0]?.msg, MISSING);
    t.is(lines[0]?.provider, 'openai');
  } finally {
    await gw.close();
  }
});

test('a gg_ key in the provider variable is warned about and never sent to the provider', async (t) => {
  const gw = await startHarness(upstream.url, { env: { OPENAI_API_KEY: GATEWAY_KEY } });
  try {
    const lines = warnings(gw.logs).filter((l) => l.env === 'OPENAI_API_KEY');
    t.is(lines.length, 1);
    t.regex(lines[0]?.msg ?? '', /^OPENAI_API_KEY holds a gateway key \(gg_…\)/);
    t.false(gw.logs.some((l) => l.includes(GATEWAY_KEY)), 'the secret is never logged');

    const { key } = gw.createKey('acme');
    const res = await fetch(`${gw.baseURL}/models`, { headers: { authorization: `Bearer ${key}` } });
    await res.arrayBuffer();
    const forwarded = upstream.received.filter((r) => r.path.endsWith('/models')).at(-1);
    t.truthy(forwarded, 'the request reached the provider');
    t.false(String(forwarded?.headers.authorization ?? '').includes(GATEWAY_KEY));
  } finally {
    await gw.close();
  }
});

test('govgate serve prints the warning on stderr', async (t) => {
  const dir = makeGatewayDir();
  try {
    writeGatewayYaml(dir, upstream.url);
    writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
    const s = await startServe({ cwd: dir, env: { OPENAI_API_KEY: '', PORT: '' } });
    try {
      // The warning follows the "listening on" line by a write or two.
      const deadline = Date.now() + 5000;
      while (!s.stderr().includes('warning:') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      t.true(s.stderr().includes(`warning: ${MISSING}\n`), s.stderr());
    } finally {
      t.is(await s.stop('SIGTERM'), 0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
