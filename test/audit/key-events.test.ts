import { rmSync, writeFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { GENESIS_HASH } from '../../gateway/store/chain.js';
import { FIXTURE_POLICY, makeGatewayDir, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { type CliResult } from '../helpers/cli.js';
import { sqliteJson, sqliteRaw } from '../helpers/sqlite-cli.js';
import { runCliAsync } from '../cli/support.js';

/**
 * Key changes made by the CLI in single-node mode land in the local control
 * log (`audit_event`) in the transaction that changes the key: every CLI run
 * happens once, in test.before, in a directory of its own; the tests below
 * read what they left behind.
 */

interface EventRow {
  rowid: number;
  id: string;
  kind: string;
  actor: string;
  detail: string;
  created_at: string;
  prev_hash: string;
  hash: string;
}

interface CreatedJson {
  id: string;
  customer_id: string;
  name: string | null;
  key: string;
}

const LONG_ACTOR = 'a'.repeat(200);
const REFUSE_EVENTS = "CREATE TRIGGER test_refuse_event BEFORE INSERT ON audit_event BEGIN SELECT RAISE(ABORT, 'test: control event refused'); END;";

let dir: string;
let dbPath: string;
const out = {} as Record<
  | 'createAlice' | 'revokeAlice' | 'createBob' | 'createOsUser'
  | 'badNewline' | 'badLong' | 'badEnv' | 'badRevoke'
  | 'revokeUnknown' | 'revokeAgain' | 'createRefused' | 'revokeRefused' | 'verify',
  CliResult
>;
let alice: CreatedJson;
let bob: CreatedJson;
let osUser: CreatedJson;

/** Whatever $GOVGATE_ACTOR the test runner has must not leak into runs that do not set it: empty is unset. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return runCliAsync(args, { cwd: dir, env: { PORT: '', GOVGATE_ACTOR: '', ...env } });
}

function parseJson<T>(r: CliResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${r.status}): ${r.stdout}\n${r.stderr}`);
  }
}

function events(): EventRow[] {
  return sqliteJson<EventRow>(dbPath, 'SELECT rowid, id, kind, actor, detail, created_at, prev_hash, hash FROM audit_event ORDER BY rowid');
}

function keyRows(): { id: string; customer_id: string; revoked_at: string | null }[] {
  return sqliteJson(dbPath, 'SELECT id, customer_id, revoked_at FROM api_keys ORDER BY rowid');
}

test.before(async () => {
  dir = makeGatewayDir();
  writeGatewayYaml(dir, 'http://127.0.0.1:9/v1');
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  dbPath = path.join(dir, 'data/audit.db');

  // Alice's create and revoke go first and alone among the runs that write, so they are rows 1 and 2.
  // Runs refused for their actor go alongside: they must write nothing at all.
  [out.createAlice, out.badNewline, out.badLong, out.badEnv] = await Promise.all([
    cli(['keys', 'create', '--customer', 'acme', '--name', 'ops laptop', '--actor', 'alice', '--json'], { GOVGATE_ACTOR: 'ignored-when-flag-given' }),
    cli(['keys', 'create', '--customer', 'bad-newline', '--actor', 'two\nlines', '--json']),
    cli(['keys', 'create', '--customer', 'bad-long', '--actor', LONG_ACTOR, '--json']),
    cli(['keys', 'create', '--customer', 'bad-env', '--json'], { GOVGATE_ACTOR: 'tab\there' }),
  ]);
  alice = parseJson<CreatedJson>(out.createAlice);
  out.revokeAlice = await cli(['keys', 'revoke', alice.id, '--actor', 'alice']);

  [out.createBob, out.createOsUser] = await Promise.all([
    cli(['keys', 'create', '--customer', 'globex', '--json'], { GOVGATE_ACTOR: 'bob' }),
    cli(['keys', 'create', '--customer', 'initech', '--json']),
  ]);
  bob = parseJson<CreatedJson>(out.createBob);
  osUser = parseJson<CreatedJson>(out.createOsUser);

  [out.badRevoke, out.revokeUnknown, out.revokeAgain] = await Promise.all([
    cli(['keys', 'revoke', bob.id, '--actor', 'x\ny']),
    cli(['keys', 'revoke', 'key_doesnotexist00', '--actor', 'carol']),
    cli(['keys', 'revoke', alice.id, '--actor', 'carol']),
  ]);

  // An event that cannot be written must take the key change down with it.
  const refuse = sqliteRaw(dbPath, REFUSE_EVENTS);
  if (refuse.status !== 0) throw new Error(`could not add the refusing trigger: ${refuse.stderr}`);
  try {
    [out.createRefused, out.revokeRefused] = await Promise.all([
      cli(['keys', 'create', '--customer', 'refused', '--actor', 'dave', '--json']),
      cli(['keys', 'revoke', bob.id, '--actor', 'dave']),
    ]);
  } finally {
    const drop = sqliteRaw(dbPath, 'DROP TRIGGER test_refuse_event');
    if (drop.status !== 0) throw new Error(`could not drop the refusing trigger: ${drop.stderr}`);
  }

  out.verify = await cli(['audit', 'verify']);
});

test.after.always(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test('keys create and keys revoke with --actor record key.created then key.revoked, in order, with ids and no secret', (t) => {
  t.is(out.createAlice.status, 0, out.createAlice.stderr);
  t.is(out.revokeAlice.status, 0, out.revokeAlice.stderr);
  const [created, revoked] = events();
  t.truthy(created);
  t.truthy(revoked);
  t.deepEqual([created!.rowid, created!.kind, created!.actor], [1, 'key.created', 'alice'], '--actor wins over $GOVGATE_ACTOR');
  t.deepEqual(JSON.parse(created!.detail), { key_id: alice.id, customer_id: 'acme', name: 'ops laptop' });
  t.deepEqual([revoked!.rowid, revoked!.kind, revoked!.actor], [2, 'key.revoked', 'alice']);
  t.deepEqual(JSON.parse(revoked!.detail), { key_id: alice.id, customer_id: 'acme' });
  t.true(created!.created_at <= revoked!.created_at);

  // No part of any secret in any column of any event.
  const stored = sqliteJson<Record<string, unknown>>(dbPath, 'SELECT * FROM audit_event');
  for (const row of stored) {
    for (const value of Object.values(row)) {
      const text = String(value);
      t.false(text.includes('gg_'), `an audit_event column holds a key: ${text}`);
      for (const secret of [alice.key, bob.key, osUser.key]) t.false(text.includes(secret.slice(-20)), 'an audit_event column holds part of a secret');
    }
  }
});

test('without --actor the actor is $GOVGATE_ACTOR, else the OS user, and a create without --name records name null', (t) => {
  t.is(out.createBob.status, 0, out.createBob.stderr);
  t.is(out.createOsUser.status, 0, out.createOsUser.stderr);
  const byKey = new Map(events().filter((e) => e.kind === 'key.created').map((e) => [JSON.parse(e.detail).key_id as string, e]));
  const bobEvent = byKey.get(bob.id);
  const osEvent = byKey.get(osUser.id);
  t.is(bobEvent?.actor, 'bob');
  t.deepEqual(JSON.parse(bobEvent!.detail), { key_id: bob.id, customer_id: 'globex', name: null });
  t.is(osEvent?.actor, userInfo().username, 'an empty $GOVGATE_ACTOR falls back to the OS user');
  t.deepEqual(JSON.parse(osEvent!.detail), { key_id: osUser.id, customer_id: 'initech', name: null });
});

test('an invalid actor exits 2 and writes neither a key nor an event', (t) => {
  for (const [name, r] of [['newline', out.badNewline], ['200 characters', out.badLong], ['revoke with a newline', out.badRevoke]] as const) {
    t.is(r.status, 2, `${name}: ${r.stderr}`);
    t.regex(r.stderr, /--actor must be 1 to 128 printable ASCII characters/, name);
    t.false(r.stdout.includes('gg_'), `${name}: no secret printed`);
  }
  t.is(out.badEnv.status, 2, out.badEnv.stderr);
  t.regex(out.badEnv.stderr, /\$GOVGATE_ACTOR must be 1 to 128 printable ASCII characters/);
  const customers = keyRows().map((k) => k.customer_id);
  for (const refused of ['bad-newline', 'bad-long', 'bad-env']) t.false(customers.includes(refused), `a key for ${refused} was stored`);
  t.false(events().some((e) => e.actor.includes('\n') || e.actor === LONG_ACTOR || e.actor.includes('\t')));
});

test('a revoke that fails (unknown id, already revoked) writes no event', (t) => {
  t.is(out.revokeUnknown.status, 1, out.revokeUnknown.stderr);
  t.regex(out.revokeUnknown.stderr, /no key with id key_doesnotexist00/);
  t.is(out.revokeAgain.status, 1, out.revokeAgain.stderr);
  t.regex(out.revokeAgain.stderr, new RegExp(`key ${alice.id} was already revoked`));
  t.false(events().some((e) => e.actor === 'carol'), 'a failed revoke left an event');
  t.is(events().filter((e) => e.kind === 'key.revoked').length, 1);
});

test('when the event cannot be written the key change is rolled back with it', (t) => {
  t.not(out.createRefused.status, 0, 'keys create succeeded though its event was refused');
  t.false(out.createRefused.stdout.includes('gg_'), 'no secret printed for a key that was not stored');
  t.not(out.revokeRefused.status, 0, 'keys revoke succeeded though its event was refused');
  const keys = keyRows();
  t.false(keys.some((k) => k.customer_id === 'refused'), 'a key was stored without its key.created event');
  t.is(keys.find((k) => k.id === bob.id)?.revoked_at, null, 'a key was revoked without its key.revoked event');
  t.false(events().some((e) => e.actor === 'dave'));
});

test('the events chain, and audit verify passes and counts them', (t) => {
  const rows = events();
  t.deepEqual(rows.map((e) => e.kind), ['key.created', 'key.revoked', 'key.created', 'key.created']);
  t.is(rows[0]!.prev_hash, GENESIS_HASH);
  for (let i = 1; i < rows.length; i++) t.is(rows[i]!.prev_hash, rows[i - 1]!.hash, `row ${rows[i]!.rowid} links to row ${rows[i - 1]!.rowid}`);
  t.is(new Set(rows.map((e) => e.hash)).size, rows.length);
  for (const e of rows) t.regex(e.hash, /^[0-9a-f]{64}$/);

  t.is(out.verify.status, 0, out.verify.stdout + out.verify.stderr);
  t.regex(out.verify.stdout, /^audit trail intact: 0 decision rows, 0 outcome rows and 4 control events verified$/m);
});
