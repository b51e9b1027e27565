import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { errorLogs, makeGatewayDir, FIXTURE_POLICY, startHarness, writeGatewayYaml, type Harness, type LogLine } from '../helpers/gateway-harness.js';
import { runCli } from '../helpers/cli.js';
import { askCheck, lines, poll, sleep } from '../cli/support.js';

// /v1/check forwards nothing, so the provider never has to answer.
const UNUSED_UPSTREAM = 'http://127.0.0.1:9/v1';

const HEAD = `version: 1
mode: enforce
block_threshold: 70
`;

/** The policy in force before the bad edits: `flag: true` is refused outright. */
const BLOCKING = `${HEAD}customers:
  "*":
    models: ["*"]
    operations: ["*"]
rules:
  - id: flagged
    when:
      metadata.flag: true
    action: block
    reason: Flagged requests are refused
`;

/** Drops the blocking rule: once in force, `flag: true` is allowed. */
const PERMISSIVE = `${HEAD}customers:
  "*":
    models: ["*"]
    operations: ["*"]
`;

/**
 * One anchor and 120 aliases of it. Apart from the alias count it is a valid
 * policy that would allow the flag, so it being in force would show; the
 * gateway documents that at most 100 aliases are expanded.
 */
const FLAT_BOMB = `${HEAD}customers:
  "*":
    models: [&m "gpt-4o-mini", ${Array.from({ length: 120 }, () => '*m').join(', ')}]
    operations: ["*"]
`;

/** A billion laughs: ten levels of ten aliases each, 10^10 strings if expanded. */
const NESTED_BOMB = (() => {
  let text = `${HEAD}customers:\n  "*":\n    models: ["*"]\n    operations: ["*"]\nlaughs:\n  l0: &l0 [${Array(10).fill('"lol"').join(', ')}]\n`;
  for (let level = 1; level <= 10; level++) {
    text += `  l${level}: &l${level} [${Array(10).fill(`*l${level - 1}`).join(', ')}]\n`;
  }
  return text;
})();

const harnesses: Harness[] = [];
const dirs: string[] = [];
test.after.always(async () => {
  await Promise.all(harnesses.map((h) => h.close()));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function flagAllowed(gw: Harness, key: string): Promise<boolean> {
  const { status, body } = await askCheck(gw.url, key, { model: 'gpt-4o-mini', operation: 'chat.completions', metadata: { flag: true } });
  if (status !== 200 || typeof body.allowed !== 'boolean') throw new Error(`/v1/check answered ${status} ${JSON.stringify(body)}`);
  return body.allowed;
}

/** 1.5 s covers the contract's 1-second reload window, so a reload of the bad edit would have happened. */
async function assertLastGoodPolicyHolds(t: ExecutionContext, gw: Harness, key: string): Promise<void> {
  const until = Date.now() + 1500;
  while (Date.now() < until) {
    t.false(await flagAllowed(gw, key), 'the last good policy must stay in force');
    await sleep(100);
  }
  // The gateway is still up and answering after the whole window.
  t.false(await flagAllowed(gw, key));
}

function rejectionLogs(gw: Harness): LogLine[] {
  return errorLogs(gw).filter((l) => /policy\.yaml:\d+:\d+/.test(l.msg ?? ''));
}

test('a policy edit with an alias bomb neither crashes the gateway nor replaces the last good policy', async (t) => {
  const gw = await startHarness(UNUSED_UPSTREAM, { policy: BLOCKING });
  harnesses.push(gw);
  const { key } = gw.createKey('acme');
  t.false(await flagAllowed(gw, key));

  writeFileSync(gw.policyFile, FLAT_BOMB);
  await assertLastGoodPolicyHolds(t, gw, key);
  t.truthy(await poll(() => rejectionLogs(gw)[0], 1500), 'the rejected edit is logged with policy.yaml:LINE:COL');

  writeFileSync(gw.policyFile, NESTED_BOMB);
  await assertLastGoodPolicyHolds(t, gw, key);
  t.truthy(await poll(() => (rejectionLogs(gw).length >= 2 ? true : undefined), 1500), 'the second rejected edit is logged too');

  // The watcher survived both: a valid edit is still picked up.
  writeFileSync(gw.policyFile, PERMISSIVE);
  const reloaded = await poll(async () => ((await flagAllowed(gw, key)) ? true : undefined), 1500);
  t.true(reloaded, 'a valid edit after the rejected ones was not picked up within 1.5 s');
});

for (const [what, text] of [['one anchor with 120 aliases', FLAT_BOMB], ['nested aliases', NESTED_BOMB]] as const) {
  test(`policy check on a file with ${what} exits 1 with one FILE:LINE:COL: line and no stack trace`, (t) => {
    const dir = makeGatewayDir();
    dirs.push(dir);
    writeGatewayYaml(dir, UNUSED_UPSTREAM);
    writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
    mkdirSync(path.join(dir, 'drafts'));
    writeFileSync(path.join(dir, 'drafts/bomb.yaml'), text);

    const r = runCli(['policy', 'check', 'drafts/bomb.yaml'], { cwd: dir, env: { PORT: '' } });
    const output = `${r.stdout}\n${r.stderr}`;
    t.is(r.status, 1, `stdout=${JSON.stringify(r.stdout)} stderr=${JSON.stringify(r.stderr)}`);
    t.false(output.includes('    at '), 'no stack trace');
    const errorLines = lines(r.stderr);
    t.is(errorLines.length, 1, `one line on stderr, got ${JSON.stringify(errorLines)}`);
    t.regex(errorLines[0] ?? '', /^drafts\/bomb\.yaml:\d+:\d+: \S/);
  });
}
