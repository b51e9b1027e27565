import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import test from 'ava';
import type { OutcomeRow } from '../../gateway/audit/audit-writer.js';
import type { PolicyVersionRow } from '../../gateway/audit/control-log.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { explainDecision, type Explanation, type RecordedDecision } from '../../gateway/audit/explain-decision.js';
import { auditExplainCommand } from '../../gateway/cli/audit-explain-command.js';
import { loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { runCli } from '../helpers/cli.js';
import { makeGatewayDir, REPO_ROOT, startHarness, writeGatewayYaml, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';

/**
 * Issue 16, point 2: `audit explain` replays a decision against the policy
 * text that made it. Real gateways make the decisions; the explanations are
 * checked for every row they wrote.
 */

const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

/** Served models: anything else is refused with no_provider before the policy runs. */
function providers(upstream: MockUpstream) {
  return [{ name: 'openai', base_url: upstream.url, models: ['gpt-*', 'o3-*', 'text-embedding-*'], api_key_env: 'OPENAI_API_KEY' }];
}

async function gatewayWith(policy: string): Promise<{ h: Harness; upstream: MockUpstream }> {
  const upstream = await startMockUpstream();
  const h = await startHarness(upstream.url, { policy, providers: providers(upstream) });
  cleanups.push(async () => {
    await h.close();
    await upstream.close();
  });
  return { h, upstream };
}

// Three successive edits: rules with metadata matchers, globs and fractional risks (whose float sum must
// survive the REAL column), a block rule, allow-lists, a max_tokens cap, customer and key limits, and one
// edit in monitor mode so would-block rows (and would-block limits) are replayed too.
const POLICY_1 = `version: 1
mode: enforce
block_threshold: 70
customers:
  acme:
    models: ["gpt-4o*", "text-embedding-3-*"]
    operations: [chat.completions, embeddings]
    max_tokens: 2048
  beta:
    models: ["gpt-4o-mini", "o3-*"]
    requests_per_minute: 30
  "*":
    models: ["*"]
rules:
  - id: pii-to-external
    when: { metadata.contains_pii: true, provider: openai }
    risk: 60
  - id: restricted
    when: { metadata.data_classification: [restricted, secret] }
    action: block
    reason: Restricted data may not leave
  - id: long
    when: { request.max_tokens: { gt: 1000 } }
    risk: 20
  - id: streamed
    when: { request.stream: true }
    risk: 0.1
  - id: senior-eng
    when: { metadata.team: "eng*", metadata.priority: { gte: 3 } }
    risk: 0.2
`;

const POLICY_2 = `version: 1
mode: monitor
block_threshold: 50
customers:
  acme:
    models: ["gpt-4o"]
    max_tokens: 1024
  beta:
    requests_per_minute: 60
  "*":
    models: ["gpt-*", "o3-*"]
rules:
  - id: pii-to-external
    when: { metadata.contains_pii: true }
    risk: 45
  - id: no-tools-team
    when: { metadata.team: { not: "eng*" }, request.stream: true }
    risk: 10
  - id: restricted
    when: { metadata.data_classification: secret }
    action: block
`;

const POLICY_3 = `version: 1
mode: enforce
block_threshold: 40
customers:
  acme:
    models: ["gpt-4o*", "o3-mini"]
    operations: [chat.completions]
    keys:
      KEY_PLACEHOLDER:
        requests_per_minute: 25
  "*":
    models: ["*"]
    max_tokens: 3000
rules:
  - id: o3-needs-project
    when: { model: "o3-*", metadata.project: { exists: false } }
    action: block
    reason: o3 models need a project
  - id: pii
    when: { metadata.contains_pii: true }
    risk: 25.5
  - id: big-request
    when: { request.max_tokens: { gte: 1500 }, customer: [beta, gamma] }
    risk: 15
`;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

async function waitForPolicy(h: Harness, text: string): Promise<void> {
  const wanted = sha256(text);
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const ready = (await (await fetch(`${h.url}/readyz`)).json()) as { policy_hash: string };
    if (ready.policy_hash === wanted) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the gateway did not load the edited policy');
}

interface Caller {
  readonly key: string;
  readonly id: string;
  readonly customer: string;
}

const MODELS = ['gpt-4o-mini', 'gpt-4o', 'gpt-4.1', 'o3-mini', 'text-embedding-3-small', 'claude-3-haiku'];
const METADATA: readonly (Record<string, string | number | boolean> | null)[] = [
  null,
  { contains_pii: true },
  { contains_pii: false, team: 'engineering', priority: 3 },
  { data_classification: 'restricted' },
  { data_classification: 'secret', project: 'alpha' },
  { team: 'sales', priority: 5, project: 'beta' },
  { contains_pii: true, team: 'eng-infra', priority: 4 },
];
const MAX_TOKENS = [null, 100, 1200, 1600, 5000];

/** The i-th request of a phase: a deterministic spread over callers, models, metadata, sizes, streaming and endpoints. */
async function send(h: Harness, callers: readonly Caller[], i: number): Promise<void> {
  // Each dimension drawn on its own, the same on every run, so the combinations do not fall into step.
  const pick = <T>(list: readonly T[], salt: string): T => list[createHash('sha256').update(`${salt}${i}`).digest().readUInt32BE(0) % list.length]!;
  const caller = pick(callers, 'caller');
  const model = pick(MODELS, 'model');
  const metadata = pick(METADATA, 'metadata');
  const maxTokens = pick(MAX_TOKENS, 'max_tokens');
  const stream = pick([false, false, true], 'stream');
  const headers: Record<string, string> = { authorization: `Bearer ${caller.key}`, 'content-type': 'application/json' };
  if (metadata) headers['x-governance-metadata'] = JSON.stringify(metadata);
  let url = `${h.baseURL}/chat/completions`;
  let body: string;
  if (i % 37 === 5) {
    body = '{"model": "gpt-4o-mini", "messages": ['; // unreadable: refused before the policy runs
  } else if (i % 11 === 3) {
    url = `${h.baseURL}/embeddings`;
    body = JSON.stringify({ model, input: 'hello' });
  } else if (i % 13 === 7) {
    url = `${h.url}/v1/check`;
    body = JSON.stringify({ model, operation: 'chat.completions', metadata: metadata ?? {}, ...(maxTokens === null ? {} : { max_tokens: maxTokens }) });
    delete headers['x-governance-metadata'];
  } else {
    body = JSON.stringify({ model, messages: [{ role: 'user', content: `hi ${i}` }], stream, ...(maxTokens === null ? {} : { max_tokens: maxTokens }) });
  }
  const res = await fetch(url, { method: 'POST', headers, body }).catch((err: Error) => {
    // fetch's own message is only "fetch failed"; the cause says what the socket did.
    throw new Error(`request ${i} to ${url} failed: ${String(err.cause)}`, { cause: err });
  });
  await res.arrayBuffer();
}

async function sendPhase(h: Harness, callers: readonly Caller[], from: number, count: number): Promise<void> {
  for (let i = from; i < from + count; i += 16) {
    await Promise.all(Array.from({ length: Math.min(16, from + count - i) }, (_, j) => send(h, callers, i + j)));
  }
}

function capture(): { out: Writable; text: () => string } {
  let text = '';
  const out = new Writable({ write(chunk: Buffer, _enc, done) { text += chunk.toString(); done(); } });
  return { out, text: () => text };
}

/** `govgate audit explain ARGS` in this process: the command's own code, without a process start per row. */
function explainInProcess(dir: string, ...args: string[]): { status: number; stdout: string } {
  const { out, text } = capture();
  const status = auditExplainCommand(loadGatewayConfig('config/gateway.yaml', {}, dir), args, out);
  return { status, stdout: text() };
}

test('replays 1,000 decisions made under three successive policy edits and finds every one in agreement', async (t) => {
  const { h } = await gatewayWith(POLICY_1);
  const callers: Caller[] = [
    { ...h.createKey('acme', 'a1'), customer: 'acme' },
    { ...h.createKey('acme', 'a2'), customer: 'acme' },
    { ...h.createKey('beta', 'b1'), customer: 'beta' },
    { ...h.createKey('gamma', 'g1'), customer: 'gamma' },
  ];
  await sendPhase(h, callers, 0, 334);

  writeFileSync(h.policyFile, POLICY_2);
  await waitForPolicy(h, POLICY_2);
  await sendPhase(h, callers, 334, 333);

  const policy3 = POLICY_3.replace('KEY_PLACEHOLDER', callers[0]!.id);
  writeFileSync(h.policyFile, policy3);
  await waitForPolicy(h, policy3);
  await sendPhase(h, callers, 667, 333);

  const db = openDatabase(h.dbPath, { synchronous: 'NORMAL', readonly: true });
  let rows: RecordedDecision[];
  const outcomes = new Map<string, OutcomeRow>();
  const versions = new Map<string, PolicyVersionRow>();
  try {
    rows = db.prepare('SELECT rowid, * FROM usagelog ORDER BY rowid').all() as RecordedDecision[];
    for (const o of db.prepare('SELECT log_id, status, duration_ms, upstream_ms, prompt_tokens, completion_tokens, total_tokens, error, created_at FROM usagelog_outcome').all() as OutcomeRow[]) outcomes.set(o.log_id, o);
    for (const v of db.prepare('SELECT hash, loaded_at, path, text FROM policy_version').all() as PolicyVersionRow[]) versions.set(v.hash, v);
  } finally {
    db.close();
  }
  t.is(rows.length, 1000);
  const hashes = new Set(rows.map((r) => r.policy_hash));
  t.deepEqual([...hashes], [sha256(POLICY_1), sha256(POLICY_2), sha256(policy3)], 'rows are spread over the three edits, in order');

  const explanations: Explanation[] = rows.map((row) => explainDecision(row, outcomes.get(row.id) ?? null, versions.get(row.policy_hash!) ?? null));
  const disagreeing = explanations.filter((e) => e.verdict.agrees !== true);
  t.deepEqual(disagreeing.map((e) => ({ id: e.row.id, reason: e.row.reason, differences: e.verdict.differences })), [], 'every replay agrees');

  // The mix the edits were written for: every kind of decision the gateway records, each replayed or explained.
  const causeKinds = (e: Explanation) => (e.causes ?? []).map((c) => (c.kind === 'refused' ? `refused:${c.code}` : c.kind));
  const kinds = new Set(explanations.flatMap(causeKinds));
  for (const kind of ['rule', 'risk_threshold', 'allow_list', 'max_tokens', 'limit', 'no_provider', 'refused:invalid_request']) t.true(kinds.has(kind), `some row was refused for ${kind}`);
  t.true(explanations.some((e) => e.row.allowed === 1 && e.replay?.mode === 'monitor' && e.replay.decision.violates), 'monitor mode recorded what would have blocked');
  t.true(explanations.some((e) => e.row.allowed === 1 && e.replay?.mode === 'monitor' && (e.causes ?? []).some((c) => c.kind === 'limit')), 'monitor mode recorded a limit that would have blocked');
  t.true(explanations.some((e) => e.row.risk_score === 0.1 + 0.2), 'a fractional risk sum replays exactly');
  const limitRows = explanations.filter((e) => e.row.allowed === 0 && (e.causes ?? []).some((c) => c.kind === 'limit'));
  t.true(limitRows.length >= 2, 'a couple of requests hit a requests_per_minute limit');
  t.true(limitRows.every((e) => e.verdict.basis === 'row' && e.replay!.limits.some((l) => l.refused)), 'limit refusals are explained from the row, naming the limit');
  const byBasis = (basis: string) => explanations.filter((e) => e.verdict.basis === basis).length;
  t.true(byBasis('replay') > 500 && byBasis('row') > 20, `replayed ${byBasis('replay')}, explained from the row ${byBasis('row')}`);
  t.log(`1000 rows: ${byBasis('replay')} replayed in full, ${byBasis('row')} explained from the row; allowed ${rows.filter((r) => r.allowed === 1).length}`);

  // The command itself, in this process, on every row: what it reads from the file must give the same verdicts.
  for (const row of rows) {
    const r = explainInProcess(h.dir, row.id, '--json');
    const printed = JSON.parse(r.stdout) as Explanation;
    if (r.status !== 0 || printed.verdict.agrees !== true) t.fail(`row ${row.rowid}: exit ${r.status}, ${JSON.stringify(printed.verdict)}`);
  }

  // And the real CLI, human and --json, on a row the policy blocked, one it allowed, and one a limit refused.
  const blocked = explanations.find((e) => e.verdict.basis === 'replay' && e.row.allowed === 0 && (e.causes ?? []).some((c) => c.kind === 'rule'))!;
  const human = runCli(['audit', 'explain', blocked.row.id], { cwd: h.dir });
  t.is(human.status, 0, human.stderr);
  t.regex(human.stdout, /^decision\n/);
  t.regex(human.stdout, /\nrules\n {2}RULE +MATCHED +RISK +BLOCKS\n/);
  t.regex(human.stdout, new RegExp(`hash +${blocked.row.policy_hash}`));
  t.regex(human.stdout, /replay agrees with the recorded decision\n$/);

  const allowed = explanations.find((e) => e.verdict.basis === 'replay' && e.row.allowed === 1 && e.replay!.decision.rules.length > 0)!;
  const json = runCli(['audit', 'explain', '--json', allowed.row.id], { cwd: h.dir });
  t.is(json.status, 0, json.stderr);
  const parsed = JSON.parse(json.stdout) as Explanation;
  t.is(json.stdout.trim().split('\n').length, 1, 'one JSON object');
  t.is(parsed.verdict.agrees, true);
  t.is(parsed.row.id, allowed.row.id);
  t.deepEqual(parsed.replay!.decision.rules, allowed.replay!.decision.rules);

  const limited = runCli(['audit', 'explain', limitRows[0]!.row.id], { cwd: h.dir });
  t.is(limited.status, 0, limited.stderr);
  t.regex(limited.stdout, /refused by limit requests_per_minute after the policy allowed it/);
  t.regex(limited.stdout, /refused it \(per the row\)/);
  t.regex(limited.stdout, /replay agrees with the recorded decision \(explained from the row\)\n$/);
});

/** Anyone who can write the file can drop the triggers first; explain and verify must both notice what follows. */
function tamper(dbPath: string, sql: string): void {
  const r = sqliteRaw(dbPath, `DROP TRIGGER IF EXISTS usagelog_no_update; DROP TRIGGER IF EXISTS policy_version_no_update; ${sql}`);
  if (r.status !== 0) throw new Error(r.stderr);
}

async function smallTrail(): Promise<{ h: Harness; rows: { rowid: number; id: string; allowed: number; risk_score: number; policy_hash: string }[] }> {
  const { h } = await gatewayWith(POLICY_1);
  const caller = { ...h.createKey('acme', 'a1'), customer: 'acme' };
  for (let i = 0; i < 8; i++) await send(h, [caller], i * 3);
  const rows = sqliteJson<{ rowid: number; id: string; allowed: number; risk_score: number; policy_hash: string }>(h.dbPath, 'SELECT rowid, id, allowed, risk_score, policy_hash FROM usagelog ORDER BY rowid');
  return { h, rows };
}

test('another edits a row with the triggers dropped and sees explain disagree and verify fail', async (t) => {
  const { h, rows } = await smallTrail();
  const target = rows.find((r) => r.allowed === 1)!;
  t.is(explainInProcess(h.dir, target.id).status, 0, 'agrees before the edit');

  tamper(h.dbPath, `UPDATE usagelog SET risk_score = risk_score + 5, reason = 'allowed' WHERE id = '${target.id}';`);

  const explained = runCli(['audit', 'explain', target.id], { cwd: h.dir });
  t.is(explained.status, 1, explained.stdout + explained.stderr);
  t.regex(explained.stdout, new RegExp(`replay DISAGREES on risk_score: recorded ${target.risk_score + 5}, replayed ${target.risk_score}`));

  const verified = runCli(['audit', 'verify'], { cwd: h.dir });
  t.is(verified.status, 1, verified.stdout + verified.stderr);
  t.regex(verified.stdout, new RegExp(`audit trail BROKEN: usagelog row ${target.rowid} \\(${target.id}\\)`));
});

test('a policy text edited after it was recorded makes explain disagree', async (t) => {
  const { h, rows } = await smallTrail();
  const target = rows[0]!;
  tamper(h.dbPath, `UPDATE policy_version SET text = replace(text, 'risk: 60', 'risk: 6') WHERE hash = '${target.policy_hash}';`);

  const r = explainInProcess(h.dir, target.id, '--json');
  t.is(r.status, 1);
  const e = JSON.parse(r.stdout) as Explanation;
  t.is(e.verdict.agrees, false);
  t.not(e.policy!.text_sha256, target.policy_hash);
  t.true(e.verdict.differences.some((d) => d.what === 'policy text'), JSON.stringify(e.verdict.differences));

  const human = explainInProcess(h.dir, target.id);
  t.regex(human.stdout, /text +EDITED: now hashes to [0-9a-f]{64}/);
  t.regex(human.stdout, /replay DISAGREES on policy text: recorded sha256 [0-9a-f]{64}, replayed the stored text hashes to/);
});

test('an unknown log id exits 1 naming it; a missing or extra argument is a usage error', async (t) => {
  const { h } = await smallTrail();
  const unknown = runCli(['audit', 'explain', '00000000-0000-4000-8000-00000000dead'], { cwd: h.dir });
  t.is(unknown.status, 1);
  t.regex(unknown.stderr, /no decision row has log id 00000000-0000-4000-8000-00000000dead/);

  const missing = runCli(['audit', 'explain'], { cwd: h.dir });
  t.is(missing.status, 2);
  t.regex(missing.stderr, /audit explain needs a LOG_ID/);
  t.throws(() => explainInProcess(h.dir, 'a', 'b'), { message: /takes one LOG_ID, got 2/ });
  t.throws(() => explainInProcess(h.dir, 'a', '--bogus'), { code: 'ERR_PARSE_ARGS_UNKNOWN_OPTION' });
});

test('a row recorded before provenance is shown as recorded and said not to be replayable, exit 0', (t) => {
  const dir = makeGatewayDir();
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const dbPath = path.join(mkdtempSync(path.join(tmpdir(), 'govgate-explain-old-')), 'audit.db');
  cleanups.push(() => rmSync(path.dirname(dbPath), { recursive: true, force: true }));
  execFileSync('sqlite3', [dbPath], { input: readFileSync(path.join(REPO_ROOT, 'test/fixtures/audit-before-provenance.sql')) });
  writeGatewayYaml(dir, 'http://127.0.0.1:9/v1', { audit: { path: dbPath } });
  writeFileSync(path.join(dir, 'config/policy.yaml'), POLICY_1);
  const id = sqliteJson<{ id: string }>(dbPath, 'SELECT id FROM usagelog ORDER BY rowid LIMIT 1')[0]!.id;

  const human = explainInProcess(dir, id);
  t.is(human.status, 0);
  t.regex(human.stdout, /\(not recorded: the row predates provenance\)/);
  t.regex(human.stdout, /not replayed: the row was recorded before provenance and names no policy version\n$/);
  const json = JSON.parse(explainInProcess(dir, id, '--json').stdout) as Explanation;
  t.is(json.verdict.agrees, null);
  t.is(json.verdict.basis, 'unrecorded');
  t.is(json.facts!.customer, json.row.customer_id);
});
