import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import test from 'ava';
import { openDatabase } from '../../gateway/store/connection.js';
import { auditExportCommand } from '../../gateway/cli/audit-export-command.js';
import { CliError } from '../../gateway/cli/cli-error.js';
import { writeAuditRows } from '../helpers/audit-rows.js';
import { runCli } from '../helpers/cli.js';
import { FIXTURE_POLICY, makeGatewayDir, REPO_ROOT, startHarness, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream } from '../helpers/mock-upstream.js';

const VERIFIER = path.join(REPO_ROOT, 'tools/verify_export.py');
/** Prompt text sent through the gateway: the audit trail keeps none, so no export may hold it. */
const PROMPT_CANARIES = [`PROMPT-${randomUUID()}`, `BLOCKED-PROMPT-${randomUUID()}`];
/** Aged rows written before the gateway's, then deleted by `cleanup-logs`: what leaves the anchors. */
const AGED_ROWS = 40;

interface Row {
  readonly rowid: number;
  readonly created_at: string;
  readonly allowed?: number;
}

/** A checkout-like directory whose audit file holds a real gateway's trail, pruned once. */
let dir: string;
let scratch: string;
/** Every request body the provider received. */
let sentToProvider = '';
const cleanups: (() => Promise<void> | void)[] = [];
test.after.always(async () => {
  for (const c of cleanups.reverse()) await c();
});

function configDir(dbPath: string): string {
  const d = makeGatewayDir();
  writeGatewayYaml(d, 'http://127.0.0.1:9/v1', { audit: { path: dbPath } });
  writeFileSync(path.join(d, 'config/policy.yaml'), FIXTURE_POLICY);
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

test.before(async () => {
  scratch = mkdtempSync(path.join(tmpdir(), 'govgate-export-'));
  cleanups.push(() => rmSync(scratch, { recursive: true, force: true }));
  const dbPath = path.join(scratch, 'audit.db');
  dir = configDir(dbPath);
  // Older than the retention window and first in every chain, so cleanup-logs can delete them and anchor what it deleted.
  await writeAuditRows(dbPath, AGED_ROWS, 100, true);

  const upstream = await startMockUpstream();
  const h = await startHarness(upstream.url, { audit: { path: dbPath } });
  try {
    const client = h.sdk(h.createKey('acme').key);
    // Three rounds some milliseconds apart, so a --since/--until window can cut out the middle one.
    for (let round = 0; round < 3; round++) {
      await Promise.all(Array.from({ length: 4 }, (_, i) => client.chat.completions.create({
        model: 'gpt-4o-mini', messages: [{ role: 'user', content: `${PROMPT_CANARIES[0]} round ${round} request ${i}` }],
      })));
      await client.chat.completions
        .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: PROMPT_CANARIES[1]! }] }, { headers: { 'X-Governance-Metadata': '{"contains_pii":true}' } })
        .then(() => Promise.reject(new Error('a request carrying personal data was forwarded')), () => undefined);
      await new Promise((r) => setTimeout(r, 50));
    }
    sentToProvider = upstream.received.map((r) => r.body.toString()).join('\n');
  } finally {
    await h.close();
    await upstream.close();
  }
  const cleanup = runCli(['cleanup-logs'], { cwd: dir });
  if (cleanup.status !== 0) throw new Error(cleanup.stderr);
});

function verifyExport(file: string, ...args: string[]): { status: number | null; stdout: string } {
  const r = spawnSync('python3', [VERIFIER, file, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout + r.stderr };
}

function exportTo(cwd: string, name: string, ...args: string[]): string {
  const file = path.join(scratch, name);
  const r = runCli(['audit', 'export', '--out', file, ...args], { cwd });
  if (r.status !== 0) throw new Error(`audit export exited ${r.status}: ${r.stderr}`);
  return file;
}

type Json = Record<string, unknown>;

function jsonLines(file: string): Json[] {
  return readFileSync(file, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as Json);
}

function rowsOf(dbPath: string, sql: string): Row[] {
  const db = openDatabase(dbPath, { synchronous: 'NORMAL', readonly: true });
  try {
    return db.prepare(sql).all() as Row[];
  } finally {
    db.close();
  }
}

/** The export with the line at `index` replaced (or removed, for null), written next to it. */
function edited(file: string, name: string, index: number, replace: (line: string) => string | null): string {
  const ending = file.endsWith('.csv') ? '\r\n' : '\n';
  const lines = readFileSync(file, 'utf8').split(ending);
  const line = replace(lines[index]!);
  if (line === null) lines.splice(index, 1);
  else {
    if (line === lines[index]) throw new Error('the edit changed nothing');
    lines[index] = line;
  }
  const out = path.join(scratch, name);
  writeFileSync(out, lines.join(ending));
  return out;
}

test('a full export in JSON lines and CSV verifies on its own, and agrees with audit verify', (t) => {
  const jsonl = exportTo(dir, 'full.jsonl');
  const csv = exportTo(dir, 'full.csv', '--format', 'csv');
  t.is(statSync(jsonl).mode & 0o777, 0o600);

  const records = jsonLines(jsonl);
  t.is(records[0]!.record, 'header');
  t.is(records.at(-1)!.record, 'trailer');
  const starts = Object.fromEntries(records.filter((r) => r.record === 'segment').map((r) => [r.chain, (r.start as Json).kind]));
  t.deepEqual(starts, { usagelog: 'anchor', usagelog_outcome: 'anchor', audit_event: 'genesis' });
  t.true(records.filter((r) => r.record === 'anchor').length >= 2);
  const decisions = records.filter((r) => r.record === 'row' && r.chain === 'usagelog');
  t.is(decisions.length, 15);
  t.is(decisions.filter((r) => r.allowed === 0).length, 3);
  t.true(records.some((r) => r.record === 'row' && r.chain === 'audit_event' && r.kind === 'policy.loaded'));
  t.true(records.some((r) => r.record === 'row' && r.chain === 'audit_event' && r.kind === 'retention.ran'));
  t.is(records.filter((r) => r.record === 'policy_version').length, 1);

  const head = runCli(['audit', 'verify', '--export-head'], { cwd: dir });
  t.is(head.status, 0, head.stderr);
  const heads = Object.fromEntries(records.filter((r) => r.record === 'head').map((r) => [r.chain, r.head]));
  t.deepEqual(heads, JSON.parse(head.stdout));

  for (const file of [jsonl, csv]) {
    const r = verifyExport(file, '--against', head.stdout.trim());
    t.is(r.status, 0, r.stdout);
    t.regex(r.stdout, /export verified: 15 decision rows, 12 outcome rows, \d+ control events; \d+ retention anchors, 1 policy version, kept head usagelog found unchanged/);
    t.regex(r.stdout, /usagelog: rows \d+\.\.\d+, starting after retention anchor \d+/);
  }
  const csvText = readFileSync(csv, 'utf8');
  t.true(csvText.startsWith('record,chain,rowid,id,'));
  t.regex(csvText, /\r\nrow,usagelog,\d+,/);
});

test('the default export goes to stdout and holds no request content', (t) => {
  const r = runCli(['audit', 'export'], { cwd: dir });
  t.is(r.status, 0, r.stderr);
  t.true(r.stdout.startsWith('{"record":"header"'));
  const file = path.join(scratch, 'stdout.jsonl');
  writeFileSync(file, r.stdout);
  t.is(verifyExport(file).status, 0);
  // The allowed prompts did reach the provider: their absence from the export is the trail's design, not a test that sent nothing.
  t.true(sentToProvider.includes(PROMPT_CANARIES[0]!));
  for (const canary of PROMPT_CANARIES) t.false(r.stdout.includes(canary), `${canary} is in the export`);
});

test('an edited row fails the export where it was edited, in either format', (t) => {
  const jsonl = exportTo(dir, 'edit.jsonl');
  const lines = readFileSync(jsonl, 'utf8').split('\n');
  const blocked = lines.findIndex((l) => l.startsWith('{"record":"row","chain":"usagelog",') && l.includes('"allowed":0'));
  const rowid = (JSON.parse(lines[blocked]!) as Row).rowid;
  const flipped = verifyExport(edited(jsonl, 'flipped.jsonl', blocked, (l) => l.replace('"allowed":0', '"allowed":1')));
  t.is(flipped.status, 1);
  t.regex(flipped.stdout, new RegExp(`^export BROKEN: usagelog row ${rowid} \\(.+\\) \\(line ${blocked + 1}\\) was changed: its content no longer matches its hash`));

  const outcome = lines.findIndex((l) => l.startsWith('{"record":"row","chain":"usagelog_outcome",'));
  const slower = verifyExport(edited(jsonl, 'slower.jsonl', outcome, (l) => l.replace(/"duration_ms":([\d.]+)/, (_, ms: string) => `"duration_ms":${Number(ms) + 0.5}`)));
  t.is(slower.status, 1);
  t.regex(slower.stdout, new RegExp(`usagelog_outcome row ${(JSON.parse(lines[outcome]!) as Row).rowid} .*was changed`));

  const policy = lines.findIndex((l) => l.startsWith('{"record":"policy_version"'));
  const looser = verifyExport(edited(jsonl, 'policy.jsonl', policy, (l) => l.replace('block_threshold: 70', 'block_threshold: 99')));
  t.is(looser.status, 1);
  t.regex(looser.stdout, /policy_version [0-9a-f]{64} .*was changed: its text no longer hashes to it/);

  const csv = exportTo(dir, 'edit.csv', '--format', 'csv');
  const csvLines = readFileSync(csv, 'utf8').split('\r\n');
  const csvRow = csvLines.findIndex((l) => l.startsWith('row,usagelog,') && l.includes(',acme,'));
  const csvRowid = csvLines[csvRow]!.split(',')[2];
  const renamed = verifyExport(edited(csv, 'renamed.csv', csvRow, (l) => l.replace(',acme,', ',acme-other,')));
  t.is(renamed.status, 1);
  t.regex(renamed.stdout, new RegExp(`^export BROKEN: usagelog row ${csvRowid} .*was changed`));
});

test('a row removed from the middle or the end of a segment fails the export', (t) => {
  const jsonl = exportTo(dir, 'cut.jsonl');
  const lines = readFileSync(jsonl, 'utf8').split('\n');
  const decisionLines = lines.flatMap((l, i) => (l.startsWith('{"record":"row","chain":"usagelog",') ? [i] : []));
  const middle = decisionLines[7]!;
  const after = (JSON.parse(lines[middle + 1]!) as Row).rowid;
  const removed = verifyExport(edited(jsonl, 'middle.jsonl', middle, () => null));
  t.is(removed.status, 1);
  t.regex(removed.stdout, new RegExp(`usagelog row ${after} .* does not link to row ${after - 2} before it: rows between them were removed`));

  const last = decisionLines.at(-1)!;
  const lastRowid = (JSON.parse(lines[last]!) as Row).rowid;
  const cut = verifyExport(edited(jsonl, 'last.jsonl', last, () => null));
  t.is(cut.status, 1);
  t.regex(cut.stdout, new RegExp(`usagelog row ${lastRowid} .*is the head of the segment but missing from the export: rows were cut off its end`));

  const trailer = lines.findIndex((l) => l.startsWith('{"record":"trailer"'));
  const truncated = verifyExport(edited(jsonl, 'truncated.jsonl', trailer, () => null));
  t.is(truncated.status, 1);
  t.regex(truncated.stdout, /no trailer: it was cut short/);

  const first = decisionLines[0]!;
  const second = (JSON.parse(lines[first + 1]!) as Row).rowid;
  const headless = verifyExport(edited(jsonl, 'first.jsonl', first, () => null));
  t.is(headless.status, 1);
  t.regex(headless.stdout, new RegExp(`usagelog row ${second} .*does not link to the segment's start \\(starting after retention anchor \\d+`));
});

test('--since and --until export a middle segment that verifies and continues from the row before it', (t) => {
  const decisions = rowsOf(path.join(scratch, 'audit.db'), 'SELECT rowid, created_at FROM usagelog ORDER BY rowid');
  // The rounds commit one after the other, five decisions each, but within a round rowid and time orders may differ:
  // the window runs from the second round's earliest decision to the third's, the middle of the chain.
  const earliest = (round: Row[]) => round.map((r) => r.created_at).sort()[0]!;
  const since = earliest(decisions.slice(5, 10));
  const until = earliest(decisions.slice(10, 15));
  const inWindow = decisions.filter((r) => r.created_at >= since && r.created_at < until);
  for (const format of ['jsonl', 'csv']) {
    const file = exportTo(dir, `window.${format}`, '--since', since, '--until', until.replace(' ', 'T') + 'Z', '--format', format);
    const r = verifyExport(file);
    t.is(r.status, 0, r.stdout);
    t.regex(r.stdout, new RegExp(`usagelog: rows ${inWindow[0]!.rowid}\\.\\.${inWindow.at(-1)!.rowid}, continuing from row ${inWindow[0]!.rowid - 1};`));
  }
  const records = jsonLines(path.join(scratch, 'window.jsonl'));
  const segment = records.find((r) => r.record === 'segment' && r.chain === 'usagelog')!;
  t.like(segment.start as Json, { kind: 'row', rowid: inWindow[0]!.rowid - 1 });
  t.like(records[0]!, { since, until });
  // The head the full export ended with is what the next export continues from.
  const full = jsonLines(exportTo(dir, 'until.jsonl', '--until', since));
  const kept = Object.fromEntries(full.filter((r) => r.record === 'head').map((r) => [r.chain, r.head]));
  const continued = verifyExport(path.join(scratch, 'window.jsonl'), '--against', JSON.stringify({ usagelog: kept.usagelog }));
  t.is(continued.status, 0, continued.stdout);
  t.regex(continued.stdout, /kept head usagelog is the row the segment continues from/);
});

test('the verifier and audit verify name the same broken row of a tampered file', async (t) => {
  const copy = path.join(scratch, 'tampered.db');
  const source = openDatabase(path.join(scratch, 'audit.db'), { synchronous: 'NORMAL', readonly: true });
  await source.backup(copy);
  source.close();
  const target = rowsOf(copy, 'SELECT rowid FROM usagelog ORDER BY rowid')[6]!.rowid;
  const db = openDatabase(copy, { synchronous: 'NORMAL' });
  db.exec(`DROP TRIGGER usagelog_no_update; UPDATE usagelog SET model = 'gpt-4o' WHERE rowid = ${target}`);
  db.close();
  const tamperedDir = configDir(copy);

  const verify = runCli(['audit', 'verify'], { cwd: tamperedDir });
  t.is(verify.status, 1);
  t.regex(verify.stdout, new RegExp(`audit trail BROKEN: usagelog row ${target} .*was changed`));
  // The export still runs: it copies what the file holds, and the copy fails the same way.
  const r = verifyExport(exportTo(tamperedDir, 'tampered.jsonl'));
  t.is(r.status, 1);
  t.regex(r.stdout, new RegExp(`export BROKEN: usagelog row ${target} .*was changed`));
});

test('usage mistakes exit 2 before the configuration is read', async (t) => {
  const noConfig = () => {
    throw new Error('configuration read');
  };
  const sink = new Writable({ write: (_c, _e, done) => done() });
  for (const args of [['--since', 'yesterday'], ['--until', '2025-02-30'], ['--since', '0d'], ['--format', 'xml'], ['extra'], ['--since', '2025-01-02', '--until', '2025-01-01']]) {
    const err = await t.throwsAsync(async () => auditExportCommand(noConfig, args, sink), { instanceOf: CliError }, args.join(' '));
    t.is(err?.exitCode, 2, args.join(' '));
  }
  // And accepted forms reach the configuration.
  for (const args of [['--since', '30d'], ['--since', '2025-01-31'], ['--until', '2025-01-31T08:00:00Z'], ['--until', '2025-01-31 08:00:00.250']]) {
    await t.throwsAsync(async () => auditExportCommand(noConfig, args, sink), { message: 'configuration read' }, args.join(' '));
  }
});
