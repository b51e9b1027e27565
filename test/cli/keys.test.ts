import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { isWellFormedKey } from '../../gateway/auth/key-format.js';
import { makeGatewayDir, FIXTURE_POLICY, startHarness, writeGatewayYaml, type Harness } from '../helpers/gateway-harness.js';
import { runCli, type CliResult } from '../helpers/cli.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { askCheck, lines, poll } from './support.js';

const KEY_SHAPE = /^gg_[0-9A-Za-z]{38}$/;
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

interface CreatedJson {
  id: string;
  customer_id: string;
  name: string | null;
  key: string;
}

type ListedKey = Record<string, unknown> & { id: string };

/** The CLI runs on a checkout-like directory of its own; nothing here needs a provider to answer. */
let dir: string;
let gw: Harness;
const out = {} as {
  createText: CliResult;
  createJson: CliResult;
  createGlobex: CliResult;
  revoke: CliResult;
  listText: CliResult;
  listJson: CliResult;
  listGlobex: CliResult;
  revokeUnknown: CliResult;
};
let textKey: string;
let jsonKey: CreatedJson;
let globexKey: CreatedJson;

function cli(...args: string[]): CliResult {
  return runCli(args, { cwd: dir, env: { PORT: '' } });
}

function parseJson<T>(result: CliResult): T {
  try {
    return JSON.parse(result.stdout) as T;
  } catch {
    throw new Error(`not JSON (exit ${result.status}): ${result.stdout}\n${result.stderr}`);
  }
}

test.before(async () => {
  dir = makeGatewayDir();
  writeGatewayYaml(dir, 'http://127.0.0.1:9/v1');
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);

  out.createText = cli('keys', 'create', '--customer', 'acme', '--name', 'x');
  textKey = lines(out.createText.stdout).at(-1)?.trim() ?? '';
  out.createJson = cli('keys', 'create', '--customer', 'acme', '--name', 'y', '--json');
  jsonKey = parseJson<CreatedJson>(out.createJson);
  out.createGlobex = cli('keys', 'create', '--customer', 'globex', '--json');
  globexKey = parseJson<CreatedJson>(out.createGlobex);
  out.revoke = cli('keys', 'revoke', jsonKey.id);
  out.listText = cli('keys', 'list');
  out.listJson = cli('keys', 'list', '--json');
  out.listGlobex = cli('keys', 'list', '--customer', 'globex', '--json');
  out.revokeUnknown = cli('keys', 'revoke', 'key_doesnotexist00');

  gw = await startHarness('http://127.0.0.1:9/v1');
});

test.after.always(async () => {
  await gw?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The first field whose name starts with `stem`, so the test does not depend on exact JSON spellings beyond the contract. */
function field(entry: ListedKey, stem: string): unknown {
  const name = Object.keys(entry).find((k) => k.startsWith(stem));
  if (name === undefined) throw new Error(`no ${stem}* field in ${JSON.stringify(entry)}`);
  return entry[name];
}

test('keys create prints the secret once, as the last line', (t) => {
  t.is(out.createText.status, 0, out.createText.stderr);
  t.regex(textKey, KEY_SHAPE);
  t.true(isWellFormedKey(textKey));
  t.is(out.createText.stdout.split(textKey).length - 1, 1, 'the secret appears exactly once');
});

test('keys create --json gives exactly id, customer_id, name and key', (t) => {
  t.is(out.createJson.status, 0, out.createJson.stderr);
  t.deepEqual(Object.keys(jsonKey).sort(), ['customer_id', 'id', 'key', 'name']);
  t.is(jsonKey.customer_id, 'acme');
  t.is(jsonKey.name, 'y');
  t.regex(jsonKey.key, KEY_SHAPE);
  t.true(isWellFormedKey(jsonKey.key));
  t.regex(globexKey.key, KEY_SHAPE);
  t.not(jsonKey.key, globexKey.key);
  t.not(jsonKey.id, globexKey.id);
});

test('keys list shows every key with its customer, name, prefix, created and revoked, and no secret', (t) => {
  t.is(out.listText.status, 0, out.listText.stderr);
  t.is(out.listJson.status, 0, out.listJson.stderr);
  const listed = parseJson<ListedKey[]>(out.listJson);
  t.is(listed.length, 3);

  for (const secret of [textKey, jsonKey.key, globexKey.key]) {
    for (const output of [out.listText.stdout, out.listJson.stdout, out.listGlobex.stdout]) {
      t.false(output.includes(secret), 'a listing must not contain a secret');
      // The display prefix is fine; the secret's tail must never appear.
      t.false(output.includes(secret.slice(-20)), 'a listing must not contain the secret part of a key');
    }
  }

  const byId = new Map(listed.map((k) => [k.id, k]));
  const json = byId.get(jsonKey.id)!;
  const globex = byId.get(globexKey.id)!;
  t.truthy(json);
  t.truthy(globex);
  t.is(field(json, 'customer'), 'acme');
  t.is(field(json, 'name'), 'y');
  t.is(field(globex, 'customer'), 'globex');
  for (const [entry, secret] of [[json, jsonKey.key], [globex, globexKey.key]] as const) {
    const prefix = field(entry, 'prefix');
    t.is(typeof prefix, 'string');
    t.true(secret.startsWith(prefix as string), 'the prefix is the start of the key');
    t.true((prefix as string).length >= 'gg_'.length + 4 && (prefix as string).length <= 16, `a short display prefix, got ${String(prefix)}`);
    t.regex(String(field(entry, 'created')), /^\d{4}-\d{2}-\d{2}/);
  }
  const textEntry = listed.find((k) => k.id !== jsonKey.id && k.id !== globexKey.id)!;
  t.is(field(textEntry, 'name'), 'x');
  t.true(textKey.startsWith(field(textEntry, 'prefix') as string));

  for (const k of listed) {
    t.true(out.listText.stdout.includes(k.id), `text listing shows ${k.id}`);
    t.true(out.listText.stdout.includes(field(k, 'prefix') as string), 'text listing shows the prefix');
  }
  t.regex(out.listText.stdout, /globex/);
  t.regex(out.listText.stdout, /acme/);
});

test('keys list --customer shows only that customer\'s keys', (t) => {
  t.is(out.listGlobex.status, 0, out.listGlobex.stderr);
  const listed = parseJson<ListedKey[]>(out.listGlobex);
  t.deepEqual(listed.map((k) => k.id), [globexKey.id]);
});

test('keys revoke marks the key revoked in the listing, and only that key', (t) => {
  t.is(out.revoke.status, 0, out.revoke.stderr);
  const listed = parseJson<ListedKey[]>(out.listJson);
  for (const k of listed) {
    const revoked = field(k, 'revoked');
    if (k.id === jsonKey.id) t.regex(String(revoked), /^\d{4}-\d{2}-\d{2}/, 'the revoked key shows when');
    else t.falsy(revoked, `${k.id} is not revoked`);
  }
  const dated = (line: string) => (line.match(/\d{4}-\d{2}-\d{2}/g) ?? []).length;
  const revokedLine = lines(out.listText.stdout).find((l) => l.includes(jsonKey.id));
  const activeLine = lines(out.listText.stdout).find((l) => l.includes(globexKey.id));
  t.is(dated(revokedLine ?? ''), 2, `created and revoked in ${revokedLine}`);
  t.is(dated(activeLine ?? ''), 1, `only created in ${activeLine}`);
});

test('revoking an unknown key id is one error line and a non-zero exit', (t) => {
  const r = out.revokeUnknown;
  t.not(r.status, 0);
  t.not(r.status, null);
  t.false(r.stderr.includes('    at '), r.stderr);
  t.is(lines(r.stderr).length, 1, r.stderr);
  t.regex(r.stderr, /key_doesnotexist00/);
});

/** Every single-character substitution of a key. */
function* typos(key: string): Generator<string> {
  for (let i = 0; i < key.length; i++) {
    const replacement = key[i] === '_' ? '-' : ALPHABET[(ALPHABET.indexOf(key[i]!) + 1) % ALPHABET.length]!;
    yield key.slice(0, i) + replacement + key.slice(i + 1);
  }
}

test('a key with any one character changed fails the checksum', (t) => {
  for (const key of [textKey, jsonKey.key, globexKey.key]) {
    t.true(isWellFormedKey(key));
    for (const typo of typos(key)) t.false(isWellFormedKey(typo), `${typo} must be rejected`);
  }
});

test('only a SHA-256 digest and a short prefix of a key are stored', (t) => {
  const dbPath = path.join(dir, 'data/audit.db');
  const rows = sqliteJson<Record<string, unknown>>(dbPath, 'SELECT * FROM api_keys');
  t.is(rows.length, 3);
  for (const secret of [textKey, jsonKey.key, globexKey.key]) {
    const digest = createHash('sha256').update(secret).digest('hex');
    const row = rows.find((r) => Object.values(r).includes(digest));
    t.truthy(row, 'a column holds the SHA-256 hex digest of the key');
    for (const r of rows) {
      for (const value of Object.values(r)) {
        if (typeof value !== 'string') continue;
        // No 16 consecutive characters of the secret are stored anywhere: the prefix is shorter.
        for (let i = 0; i + 16 <= secret.length; i++) t.false(value.includes(secret.slice(i, i + 16)), 'a column contains part of the secret');
      }
    }
    for (const file of [dbPath, `${dbPath}-wal`]) {
      if (existsSync(file)) t.false(readFileSync(file).includes(secret), `${path.basename(file)} contains the secret`);
    }
  }
});

test('a running gateway refuses a key with a typo with 401 invalid_api_key', async (t) => {
  const { key } = gw.createKey('acme');
  const question = { model: 'gpt-4o-mini', operation: 'chat.completions' };
  t.is((await askCheck(gw.url, key, question)).status, 200);
  // A sample of positions keeps this quick; the checksum test above covers them all.
  for (const i of [3, 10, 20, 34, 35, 40]) {
    const typo = [...typos(key)][i]!;
    const { status, body } = await askCheck(gw.url, typo, question);
    t.is(status, 401, `typo at ${i}`);
    t.is(body.error?.code, 'invalid_api_key');
  }
});

test('a key created by the CLI works in a running gateway within 1 second, and keys revoke stops it within 1 second', async (t) => {
  const question = { model: 'gpt-4o-mini', operation: 'chat.completions' };
  const created = runCli(['keys', 'create', '--customer', 'acme', '--name', 'live', '--json'], { cwd: gw.dir, env: { PORT: '' } });
  t.is(created.status, 0, created.stderr);
  const { key, id } = parseJson<CreatedJson>(created);
  const accepted = await poll(async () => ((await askCheck(gw.url, key, question)).status === 200 ? true : undefined), 1500);
  t.true(accepted, 'the new key was not accepted within 1.5 s');

  const revoked = runCli(['keys', 'revoke', id], { cwd: gw.dir, env: { PORT: '' } });
  t.is(revoked.status, 0, revoked.stderr);
  const refused = await poll(async () => {
    const { status, body } = await askCheck(gw.url, key, question);
    return status === 401 && body.error?.code === 'invalid_api_key' ? true : undefined;
  }, 1500);
  t.true(refused, 'the revoked key was still accepted after 1.5 s');
});
