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

test('admin.token_env names the variable the dashboard token is read from; GOVGATE_ADMIN_TOKEN is then ignored', async (t) => {
  const upstream = await startMockUpstream();
  const token = 'c'.repeat(32);
  const gw = await startHarness(upstream.url, {
    admin: { token_env: 'DASHBOARD_TOKEN' },
    // A short GOVGATE_ADMIN_TOKEN would refuse the start if it were still read.
    env: { OPENAI_API_KEY: UPSTREAM_SECRET, DASHBOARD_TOKEN: token, GOVGATE_ADMIN_TOKEN: SHORT_TOKEN },
  });
  try {
    const withToken = await fetch(`${gw.url}/admin/api/policy`, { headers: { authorization: `Bearer ${token}` } });
    t.is(withToken.status, 200);
    await withToken.arrayBuffer();
    const withOther = await fetch(`${gw.url}/admin/api/policy`, { headers: { authorization: `Bearer ${SHORT_TOKEN}` } });
    t.is(withOther.status, 401);
    await withOther.arrayBuffer();
  } finally {
    await gw.close();
    await upstream.close();
  }
});

test('a short token in the variable admin.token_env names is refused with that variable named', (t) => {
  const dir = makeGatewayDir();
  try {
    writeGatewayYaml(dir, 'http://127.0.0.1:9', { admin: { token_env: 'DASHBOARD_TOKEN' } });
    writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
    const result = runCli(['serve'], { cwd: dir, env: { OPENAI_API_KEY: UPSTREAM_SECRET, PORT: '', DASHBOARD_TOKEN: SHORT_TOKEN } });
    t.is(result.status, 1);
    t.regex(result.stderr, /^govgate: DASHBOARD_TOKEN must be at least 32 characters long \(it has 31\)/);
    t.false(existsSync(path.join(dir, 'data/audit.db')), 'nothing was opened');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
