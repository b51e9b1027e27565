import { rmSync } from 'node:fs';
import test from 'ava';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { makeGatewayDir, startHarness, writeGatewayYaml, type Harness } from '../helpers/gateway-harness.js';
import { runCli } from '../helpers/cli.js';
import { loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { usageCommand } from '../../gateway/cli/usage-command.js';
import { CliError } from '../../gateway/cli/cli-error.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';
import { waitFor } from '../proxy/support.js';
import { chat } from '../limits/support.js';
import { policy } from '../helpers/policy-builder.js';
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

/** The command in this process (the CLI's start-up is slow on a busy machine); `main` wiring is tested through the real CLI below. */
function usage(args: string[], cwd: string = gw.dir): string {
  let out = '';
  usageCommand(loadGatewayConfig('config/gateway.yaml', {}, cwd), args, { write: (text: string) => ((out += text), true) } as NodeJS.WritableStream);
  return out;
}

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, {
    policy: policy()
      .catchAll()
      .customer('usage-a', { requests_per_minute: 3 })
      .rule({ id: 'restricted', when: { 'metadata.data_classification': 'restricted' }, action: 'block' })
      .yaml(),
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
  t.deepEqual(JSON.parse(usage(['--since', '7d', '--json'])), rows);
  t.deepEqual(rows, [
    { customer: 'usage-a', model: 'gpt-4o-mini', requests: 4, blocked: 1, prompt_tokens: 33, completion_tokens: 21, total_tokens: 54 },
    { customer: 'usage-b', model: 'gpt-4o-mini', requests: 1, blocked: 0, prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 },
    { customer: 'usage-b', model: 'text-embedding-3-small', requests: 2, blocked: 1, prompt_tokens: 4, completion_tokens: 0, total_tokens: 4 },
  ]);
});

test('usage --customer narrows to one customer; --since takes minutes, hours or days', (t) => {
  const one = JSON.parse(usage(['--customer', 'usage-b', '--json'])) as Row[];
  t.deepEqual(one.map((r) => r.customer), ['usage-b', 'usage-b']);
  const week = JSON.parse(usage(['--since', '168h', '--json'])) as Row[];
  t.false(week.some((r) => r.customer === 'usage-old'));
  const month = JSON.parse(usage(['--since', '15000m', '--json'])) as Row[];
  t.true(month.some((r) => r.customer === 'usage-old'));
  t.true(JSON.parse(usage(['--since', '30d', '--json'])).some((r: Row) => r.customer === 'usage-old'), 'the default reaches 30 days back');
});

test('usage prints an aligned table', (t) => {
  const lines = usage(['--customer', 'usage-a']).trimEnd().split('\n');
  t.deepEqual(lines[0]!.split(/\s+/), ['CUSTOMER', 'MODEL', 'REQUESTS', 'BLOCKED', 'PROMPT_TOKENS', 'COMPLETION_TOKENS', 'TOTAL_TOKENS']);
  t.deepEqual(lines[1]!.split(/\s+/), ['usage-a', 'gpt-4o-mini', '4', '1', '33', '21', '54']);
  t.is(lines[0]!.length, lines[1]!.length, 'numbers are right-aligned under their headers');
  t.is(lines[0]!.indexOf('MODEL'), lines[1]!.indexOf('gpt-4o-mini'));
});

test('usage errors are one line on stderr with a non-zero exit', (t) => {
  const result = runCli(['usage', '--since', '1w'], { cwd: gw.dir });
  t.is(result.status, 2);
  t.is(result.stderr, 'govgate: --since must be a positive number of days, hours or minutes such as 7d, 12h or 30m, got "1w"\n');
  for (const args of [['--since', '7'], ['--since', '0d'], ['--bogus']]) {
    const err = t.throws(() => usage(args));
    t.true(err instanceof CliError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION', args.join(' '));
  }
  const empty = makeGatewayDir();
  try {
    writeGatewayYaml(empty, upstream.url);
    const err = t.throws(() => usage([], empty), { instanceOf: CliError });
    t.regex(err?.message ?? '', /^cannot open the audit database \S*data\/audit\.db \(has the gateway run here yet\?\)$/);
  } finally {
    rmSync(empty, { recursive: true, force: true });
  }
});
