import { rmSync } from 'node:fs';
import test from 'ava';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { makeGatewayDir, startHarness, writeGatewayYaml, type Harness } from '../helpers/gateway-harness.js';
import { runCli } from '../helpers/cli.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';
import { waitFor } from '../proxy/support.js';
import { chat, policyWith } from '../limits/support.js';
import { askCheck } from './support.js';

let upstream: MockUpstream;
let gw: Harness;

interface Row {
  customer: string;
  model: string | null;
  requests: number;
  blocked: number;
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, {
    policy: `${policyWith(`  usage-a:
    requests_per_minute: 3
`).replace('rules: []\n', '')}rules:
  - id: restricted
    when:
      metadata.data_classification: restricted
    action: block
`,
  });
  const a = gw.createKey('usage-a');
  const b = gw.createKey('usage-b');
  for (let i = 0; i < 4; i++) await (await chat(gw.url, a.key)).arrayBuffer();
  await (await chat(gw.url, b.key)).arrayBuffer();
  const embed = (headers: Record<string, string>) => fetch(`${gw.url}/v1/embeddings`, {
    method: 'POST',
    headers: { authorization: `Bearer ${b.key}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'text-embedding-3-small', input: 'x' }),
  });
  await (await embed({})).arrayBuffer();
  const blocked = await embed({ 'x-governance-metadata': '{"data_classification":"restricted"}' });
  await blocked.arrayBuffer();
  await askCheck(gw.url, b.key, { model: 'gpt-4o-mini', operation: 'chat.completions' });
  // A row from ten days ago, outside --since 7d.
  sqliteRaw(gw.dbPath, `INSERT INTO usagelog (id, customer_id, api_key_id, model, operation, meta, risk_score, allowed, reason, created_at)
    VALUES ('00000000-0000-4000-8000-000000000000', 'usage-old', 'key_old', 'gpt-4o', 'chat.completions', '{"kind":"proxy"}', 0, 1, 'allowed', strftime('%Y-%m-%d %H:%M:%f', 'now', '-10 days'))`);
  const outcomes = await waitFor(() => {
    const [row] = sqliteJson<{ n: number }>(gw.dbPath, 'SELECT COUNT(*) AS n FROM usagelog_outcome');
    return row && row.n === 5 ? true : undefined;
  }, 3000);
  if (!outcomes) throw new Error('outcome rows did not arrive');
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

test('usage --json: requests, blocks and tokens per customer and model; checks are not requests', (t) => {
  const result = runCli(['usage', '--since', '7d', '--json'], { cwd: gw.dir });
  t.is(result.status, 0, result.stderr);
  const rows = JSON.parse(result.stdout) as Row[];
  t.deepEqual(rows, [
    { customer: 'usage-a', model: 'gpt-4o-mini', requests: 4, blocked: 1, prompt_tokens: 33, completion_tokens: 21, total_tokens: 54 },
    { customer: 'usage-b', model: 'gpt-4o-mini', requests: 1, blocked: 0, prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 },
    { customer: 'usage-b', model: 'text-embedding-3-small', requests: 2, blocked: 1, prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 },
  ]);
});

test('usage --customer narrows to one customer; --since takes minutes, hours or days', (t) => {
  const one = JSON.parse(runCli(['usage', '--customer', 'usage-b', '--json'], { cwd: gw.dir }).stdout) as Row[];
  t.deepEqual(one.map((r) => r.customer), ['usage-b', 'usage-b']);
  const week = JSON.parse(runCli(['usage', '--since', '168h', '--json'], { cwd: gw.dir }).stdout) as Row[];
  t.false(week.some((r) => r.customer === 'usage-old'));
  const month = JSON.parse(runCli(['usage', '--since', '15000m', '--json'], { cwd: gw.dir }).stdout) as Row[];
  t.true(month.some((r) => r.customer === 'usage-old'));
});

test('usage prints an aligned table', (t) => {
  const result = runCli(['usage', '--customer', 'usage-a'], { cwd: gw.dir });
  t.is(result.status, 0);
  const lines = result.stdout.trimEnd().split('\n');
  t.deepEqual(lines[0]!.split(/\s+/), ['CUSTOMER', 'MODEL', 'REQUESTS', 'BLOCKED', 'PROMPT_TOKENS', 'COMPLETION_TOKENS', 'TOTAL_TOKENS']);
  t.deepEqual(lines[1]!.split(/\s+/), ['usage-a', 'gpt-4o-mini', '4', '1', '33', '21', '54']);
  t.is(lines[0]!.length, lines[1]!.length, 'numbers are right-aligned under their headers');
  t.is(lines[0]!.indexOf('MODEL'), lines[1]!.indexOf('gpt-4o-mini'));
});

test('usage errors are one line on stderr with a non-zero exit', (t) => {
  for (const args of [['--since', '1w'], ['--bogus']]) {
    const result = runCli(['usage', ...args], { cwd: gw.dir });
    t.not(result.status, 0, args.join(' '));
    t.is(result.stderr.trimEnd().split('\n').length, 1, result.stderr);
    t.regex(result.stderr, /^govgate: /);
  }
  const empty = makeGatewayDir();
  try {
    writeGatewayYaml(empty, upstream.url);
    const result = runCli(['usage'], { cwd: empty });
    t.is(result.status, 1);
    t.regex(result.stderr, /^govgate: cannot open the audit database data\/audit\.db/);
    t.is(result.stderr.trimEnd().split('\n').length, 1);
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});
