import { renameSync, writeFileSync } from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { errorLogs, startHarness, type Harness } from '../helpers/gateway-harness.js';
import { askCheck, poll, positionOf, sleep } from '../cli/support.js';
import { policy } from '../helpers/policy-builder.js';

// /v1/check forwards nothing, so the provider never has to answer.
const UNUSED_UPSTREAM = 'http://127.0.0.1:9/v1';

const OPEN = policy().catchAll();

/** `flag: true` is refused outright. */
const BLOCKING = OPEN.rule({ id: 'flagged', when: { 'metadata.flag': true }, action: 'block', reason: 'Flagged requests are refused' }).yaml();

/** `flag: true` only scores 10, so it is allowed. */
const SCORING = OPEN.rule({ id: 'flagged', when: { 'metadata.flag': true }, risk: 10 }).yaml();

// The invalid edits below are written by hand, appended to SCORING's list of rules (its last key): a builder writes only valid policies.

/** SCORING's change plus an unknown matcher: must be rejected whole, so the flag stays blocked. */
const SCORING_WITH_BAD_MATCHER = `${SCORING}  - id: broken
    when:
      request.max_tokens: {above: 100}
    risk: 20
`;

/** SCORING's change plus a YAML syntax error (tab indentation). */
const SCORING_WITH_BAD_YAML = `${SCORING}  - id: broken\n\twhen: {model: x}\n`;

const harnesses: Harness[] = [];
test.after.always(async () => {
  await Promise.all(harnesses.map((h) => h.close()));
});

async function start(text: string): Promise<{ gw: Harness; key: string }> {
  const gw = await startHarness(UNUSED_UPSTREAM, { policy: text });
  harnesses.push(gw);
  return { gw, key: gw.createKey('acme').key };
}

async function flagAllowed(gw: Harness, key: string): Promise<boolean> {
  const { status, body } = await askCheck(gw.url, key, { model: 'gpt-4o-mini', operation: 'chat.completions', metadata: { flag: true } });
  if (status !== 200 || typeof body.allowed !== 'boolean') throw new Error(`/v1/check answered ${status} ${JSON.stringify(body)}`);
  return body.allowed;
}

/** The contract gives a reload 1 second; polling 1.5 s leaves room for the test's own scheduling. */
async function waitForDecision(gw: Harness, key: string, allowed: boolean): Promise<boolean> {
  return (await poll(async () => ((await flagAllowed(gw, key)) === allowed ? true : undefined), 1500)) === true;
}

/** Asserts the decision stays `allowed` for 1.5 s: long enough for any reload to have happened. */
async function assertDecisionHolds(t: ExecutionContext, gw: Harness, key: string, allowed: boolean): Promise<void> {
  const until = Date.now() + 1500;
  while (Date.now() < until) {
    t.is(await flagAllowed(gw, key), allowed, 'the last good policy must stay in force');
    await sleep(100);
  }
}

/** Editors save by writing a temporary file and renaming it over the original. */
function saveLikeAnEditor(file: string, text: string): void {
  const tmp = `${file}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}


/** Waits for an error log that locates the mistake at one of `candidates` in policy.yaml. */
async function assertRejectionLogged(t: ExecutionContext, gw: Harness, candidates: { line: number; col: number }[]): Promise<void> {
  const wanted = candidates.map((c) => `policy.yaml:${c.line}:${c.col}`);
  const found = await poll(() => errorLogs(gw).find((l) => wanted.some((w) => l.msg?.includes(w))), 1500);
  t.truthy(found, `expected an error log line containing ${wanted.join(' or ')}; error lines: ${JSON.stringify(errorLogs(gw))}`);
}

test('an edit written in place is in force within 1 second', async (t) => {
  const { gw, key } = await start(BLOCKING);
  t.false(await flagAllowed(gw, key));
  writeFileSync(gw.policyFile, SCORING);
  t.true(await waitForDecision(gw, key, true), 'the edit that stops blocking was not picked up within 1.5 s');
  writeFileSync(gw.policyFile, BLOCKING);
  t.true(await waitForDecision(gw, key, false), 'the edit that blocks again was not picked up within 1.5 s');
});

test('an edit saved by write-to-temp-then-rename is in force within 1 second', async (t) => {
  const { gw, key } = await start(BLOCKING);
  t.false(await flagAllowed(gw, key));
  saveLikeAnEditor(gw.policyFile, SCORING);
  t.true(await waitForDecision(gw, key, true), 'the renamed-in edit was not picked up within 1.5 s');
  // A second rename proves the watcher follows the new file, not the inode it started with.
  saveLikeAnEditor(gw.policyFile, BLOCKING);
  t.true(await waitForDecision(gw, key, false), 'the second renamed-in edit was not picked up within 1.5 s');
});

test('an invalid edit is rejected whole, logged with file:line:col, and a later valid edit is picked up', async (t) => {
  const { gw, key } = await start(BLOCKING);
  t.false(await flagAllowed(gw, key));

  writeFileSync(gw.policyFile, SCORING_WITH_BAD_MATCHER);
  await assertDecisionHolds(t, gw, key, false);
  await assertRejectionLogged(t, gw, [positionOf(SCORING_WITH_BAD_MATCHER, 'above'), positionOf(SCORING_WITH_BAD_MATCHER, '100}')]);

  writeFileSync(gw.policyFile, SCORING);
  t.true(await waitForDecision(gw, key, true), 'the valid edit after a rejected one was not picked up within 1.5 s');
});

test('a YAML syntax error saved by rename is rejected whole, and a later valid save is picked up', async (t) => {
  const { gw, key } = await start(BLOCKING);
  t.false(await flagAllowed(gw, key));

  saveLikeAnEditor(gw.policyFile, SCORING_WITH_BAD_YAML);
  await assertDecisionHolds(t, gw, key, false);
  await assertRejectionLogged(t, gw, [positionOf(SCORING_WITH_BAD_YAML, '\t')]);

  saveLikeAnEditor(gw.policyFile, SCORING);
  t.true(await waitForDecision(gw, key, true), 'the valid save after a rejected one was not picked up within 1.5 s');
});
