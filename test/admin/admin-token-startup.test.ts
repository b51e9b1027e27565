import { existsSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { runCli } from '../helpers/cli.js';
import { makeGatewayDir, FIXTURE_POLICY, startHarness, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream } from '../helpers/mock-upstream.js';

const SHORT_TOKEN = 'a'.repeat(31);

test('govgate serve refuses a 31-character GOVGATE_ADMIN_TOKEN with one line naming the variable and the minimum, before opening anything', (t) => {
  const dir = makeGatewayDir();
  try {
    // Never contacted: the start is refused before any provider is set up.
    writeGatewayYaml(dir, 'http://127.0.0.1:9');
    writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
    const result = runCli(['serve'], { cwd: dir, env: { OPENAI_API_KEY: UPSTREAM_SECRET, PORT: '', GOVGATE_ADMIN_TOKEN: SHORT_TOKEN } });
    t.is(result.status, 1);
    t.is(
      result.stderr,
      'govgate: GOVGATE_ADMIN_TOKEN must be at least 32 characters long (it has 31); generate one with "openssl rand -hex 32", or unset it to turn the dashboard off\n',
    );
    t.is(result.stdout, '');
    t.false(existsSync(path.join(dir, 'data/audit.db')), 'nothing was opened');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a 32-character GOVGATE_ADMIN_TOKEN starts the gateway and opens the dashboard', async (t) => {
  const upstream = await startMockUpstream();
  const token = 'b'.repeat(32);
  const gw = await startHarness(upstream.url, { env: { OPENAI_API_KEY: UPSTREAM_SECRET, GOVGATE_ADMIN_TOKEN: token } });
  try {
    const res = await fetch(`${gw.url}/admin/api/policy`, { headers: { authorization: `Bearer ${token}` } });
    t.is(res.status, 200);
    await res.arrayBuffer();
  } finally {
    await gw.close();
    await upstream.close();
  }
});
