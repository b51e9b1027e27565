import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import test, { type ExecutionContext } from 'ava';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { loadGatewayConfig, type GatewayConfig } from '../../gateway/config/gateway-config.js';
import { ConfigError } from '../../gateway/config/yaml-source.js';
import { isPlainObject } from '../../gateway/config/validate.js';
import { GATEWAY_ID } from '../../gateway/config/fleet-config.js';
import {
  ROOT_KEYS,
  SETTINGS,
  SETTING_KEYS,
  describeDefault,
  describeType,
  isNoDefault,
  isSettingKey,
  sectionKeys,
  splitKey,
  type Setting,
  type SettingKey,
} from '../../gateway/config/settings.js';

/**
 * The table in gateway/config/settings.ts is the one place a setting's type and
 * default are written down. These tests tie the other places to it: the tables
 * in docs/configuration.md, the shipped config/gateway.yaml (keys set and keys
 * shown as comments) and what loadGatewayConfig actually yields.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DOC = 'docs/configuration.md';
const SHIPPED = 'config/gateway.yaml';
const KEY_TABLE_HEADER = ['key', 'type', 'default', 'meaning'];

const setting = (key: SettingKey): Setting => SETTINGS[key];

// --- docs/configuration.md

/** A markdown table row's cells; a `|` inside backticks or escaped as `\|` does not split. */
function cells(line: string): string[] {
  const out: string[] = [];
  let cell = '';
  let code = false;
  const inner = line.trim().replace(/^\|/, '').replace(/\|$/, '');
  for (let i = 0; i < inner.length; i++) {
    const c = inner[i]!;
    if (c === '\\' && inner[i + 1] === '|') {
      cell += '|';
      i++;
    } else if (c === '`') {
      code = !code;
      cell += c;
    } else if (c === '|' && !code) {
      out.push(cell.trim());
      cell = '';
    } else {
      cell += c;
    }
  }
  out.push(cell.trim());
  return out;
}

interface DocRow {
  readonly line: number;
  readonly cells: readonly string[];
}

/** Every markdown table of the document: its header cells and its rows (separator excluded). */
function tables(markdown: string): { header: readonly string[]; line: number; rows: DocRow[] }[] {
  const out: { header: readonly string[]; line: number; rows: DocRow[] }[] = [];
  let current: { header: readonly string[]; line: number; rows: DocRow[] } | null = null;
  markdown.split('\n').forEach((text, i) => {
    if (!text.trimStart().startsWith('|')) {
      current = null;
      return;
    }
    if (current === null) {
      current = { header: cells(text), line: i + 1, rows: [] };
      out.push(current);
    } else if (!/^\|[\s:|-]+\|$/.test(text.trim())) {
      current.rows.push({ line: i + 1, cells: cells(text) });
    }
  });
  return out;
}

const doc = readFileSync(path.join(ROOT, DOC), 'utf8');
/** The rows of every table that lists settings (its first column is `key`). */
const keyTables = tables(doc).filter((table) => table.header[0] === 'key');

test('the documentation lists settings in machine-checkable tables: key | type | default | meaning', (t) => {
  t.true(keyTables.length > 0, `${DOC} has a table of keys`);
  for (const table of keyTables) {
    t.deepEqual(table.header, KEY_TABLE_HEADER, `${DOC}:${table.line}: the header of a table of keys`);
    for (const row of table.rows) {
      t.is(row.cells.length, KEY_TABLE_HEADER.length, `${DOC}:${row.line}: ${row.cells.length} cells`);
      t.regex(row.cells[0] ?? '', /^`[^`]+`$/, `${DOC}:${row.line}: one key per row, in backticks`);
    }
  }
});

/** The documented key of a row, without its backticks. */
const keyOf = (row: DocRow): string => (row.cells[0] ?? '').replace(/^`|`$/g, '');

test('every documented key is a setting of the table', (t) => {
  for (const table of keyTables) {
    const seen = new Set<string>();
    for (const row of table.rows) {
      const key = keyOf(row);
      t.true(isSettingKey(key), `${DOC}:${row.line}: \`${key}\` is not in gateway/config/settings.ts`);
      t.false(seen.has(key), `${DOC}:${row.line}: \`${key}\` is listed twice in one table`);
      seen.add(key);
    }
  }
});

test('every setting is documented, with the type and the default of the table', (t) => {
  const rows = keyTables.flatMap((table) => table.rows);
  // The first table is the reference: every setting is in it; later tables (Fleet) repeat some.
  const reference = new Set(keyTables[0]?.rows.map(keyOf));
  for (const key of SETTING_KEYS) {
    t.true(reference.has(key), `${key} is missing from the table of keys in ${DOC}`);
    for (const row of rows.filter((r) => keyOf(r) === key)) {
      const expected = [`\`${key}\``, describeType(setting(key).type), describeDefault(setting(key))];
      t.deepEqual(row.cells.slice(0, 3), expected, `${DOC}:${row.line}: expected | ${expected.join(' | ')} |`);
    }
  }
});

// --- The shipped config/gateway.yaml

/** The leaves of a parsed YAML document by setting key: `providers[].models` for a key of a list item. */
function leaves(value: unknown, prefix = ''): { key: string; value: unknown }[] {
  if (!isPlainObject(value)) return [];
  return Object.entries(value).flatMap(([name, inner]) => {
    const key = `${prefix}${name}`;
    if (isPlainObject(inner)) return leaves(inner, `${key}.`);
    if (Array.isArray(inner) && inner.length > 0 && inner.every(isPlainObject)) return inner.flatMap((item) => leaves(item, `${key}[].`));
    return [{ key, value: inner }];
  });
}

/**
 * The file with its commented-out keys turned back on (`# max_connections: 1024`
 * and `# fleet:` blocks), so the keys it shows as examples are checked too.
 */
function uncommentKeys(text: string): string {
  return text
    .split('\n')
    .map((line) => line.replace(/^(\s*)# (\s*[a-z_]+:(?:\s.*)?)$/, '$1$2'))
    .join('\n');
}

const shippedText = readFileSync(path.join(ROOT, SHIPPED), 'utf8');

/**
 * Values the shipped file deliberately sets to something else than the default.
 * Adding one is a decision: say why.
 */
const SHIPPED_DIFFERS: ReadonlyMap<string, string> = new Map<string, string>();

/** Every key shown has a default-valued setting behind it, and shows that default (see SHIPPED_DIFFERS). */
function assertShowsDefaults(t: ExecutionContext, where: string, shown: { key: string; value: unknown }[]): void {
  for (const { key, value } of shown) {
    if (!isSettingKey(key)) {
      t.fail(`${where}: ${key} is not a setting of gateway/config/settings.ts`);
      continue;
    }
    const fallback = setting(key).default;
    if (isNoDefault(fallback) || SHIPPED_DIFFERS.has(key)) continue;
    t.true(isDeepStrictEqual(value, fallback), `${where}: ${key} is ${JSON.stringify(value)}, the default is ${JSON.stringify(fallback)}`);
  }
}

test('the shipped file loads, and every key it sets is a setting showing its default', (t) => {
  const config = loadGatewayConfig(SHIPPED, {}, ROOT);
  t.is(config.providers.length, 1);
  const set = leaves(parseYaml(shippedText));
  t.true(set.length > 0);
  assertShowsDefaults(t, SHIPPED, set);
});

test('the shipped file shows every setting, set or as a comment, and the commented ones show their defaults', (t) => {
  const shown = leaves(parseYaml(uncommentKeys(shippedText)));
  const keys = new Set(shown.map((leaf) => leaf.key));
  for (const key of SETTING_KEYS) t.true(keys.has(key), `${SHIPPED} neither sets nor shows ${key} in a comment`);
  assertShowsDefaults(t, `${SHIPPED} (comments included)`, shown);
});

test('the excerpt of the shipped file in the docs shows known settings at their defaults', (t) => {
  const excerpt = /## The shipped file, in short\n+```yaml\n([\s\S]*?)\n```/.exec(doc)?.[1];
  if (excerpt === undefined) return t.fail(`${DOC} has no yaml block under "The shipped file, in short"`);
  const shown = leaves(parseYaml(excerpt));
  t.true(shown.length > 0);
  assertShowsDefaults(t, `${DOC} (shipped file, in short)`, shown);
});

// --- What the loader yields

const dirs: string[] = [];
test.after.always(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function loadText(text: string): { config: GatewayConfig; dir: string } {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-settings-'));
  dirs.push(dir);
  writeFileSync(path.join(dir, 'gateway.yaml'), text);
  return { config: loadGatewayConfig('gateway.yaml', {}, dir), dir };
}

const MINIMAL = { providers: [{ name: 'openai', base_url: 'https://api.openai.com/v1' }] };
/** The least that turns fleet mode on, so the fleet settings are read at all. */
const WITH_FLEET = { ...MINIMAL, fleet: { database_url_env: 'DATABASE_URL' } };

/** Defaults computed at load time, as this machine computes them. */
const DERIVED: ReadonlyMap<SettingKey, () => unknown> = new Map([['fleet.gateway_id', () => hostname()]]);

const camel = (name: string): string => name.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());

function property(value: unknown, name: string | number): unknown {
  if (Array.isArray(value) && typeof name === 'number') return value[name];
  if (isPlainObject(value) && typeof name === 'string') return Object.hasOwn(value, name) ? value[name] : undefined;
  return undefined;
}

/** Where a setting lands in the loaded configuration: `server.max_body_bytes` → config.server.maxBodyBytes. */
function loaded(config: GatewayConfig, key: SettingKey): { holder: unknown; found: boolean; value: unknown } {
  const { section, name } = splitKey(key);
  const holder = section.endsWith('[]') ? property(property(config, section.slice(0, -2)), 0) : property(config, section);
  const found = isPlainObject(holder) && Object.hasOwn(holder, camel(name));
  return { holder, found, value: found ? property(holder, camel(name)) : undefined };
}

test('a minimal file (one provider) loads to exactly the defaults of the table', (t) => {
  const minimal = loadText(stringifyYaml(MINIMAL));
  const fleet = loadText(stringifyYaml(WITH_FLEET));
  t.is(minimal.config.fleet, null, 'no fleet section: single-node mode');
  const derivedKeys = SETTING_KEYS.filter((key) => {
    const fallback = setting(key).default;
    return isNoDefault(fallback) && fallback.absent === 'derived';
  });
  t.deepEqual([...DERIVED.keys()].sort(), [...derivedKeys].sort(), 'every derived default has a way to compute it here');
  const setIn = (file: object, key: SettingKey) => leaves(file).some((leaf) => leaf.key === key);

  for (const key of SETTING_KEYS) {
    const fallback = setting(key).default;
    if (isNoDefault(fallback) && fallback.absent === 'required') continue;
    // The first loaded file that reaches the setting without setting it.
    const source = [
      { file: MINIMAL, ...minimal },
      { file: WITH_FLEET, ...fleet },
    ].find((s) => loaded(s.config, key).holder !== null && !setIn(s.file, key));
    if (!source) {
      // A setting that switches its section on (fleet.database_url_env): absent, the whole section is null.
      if (isNoDefault(fallback) && fallback.absent === 'none' && loaded(minimal.config, key).holder === null) continue;
      t.fail(`${key}: no test file reaches it with its default`);
      continue;
    }
    const got = loaded(source.config, key);
    t.true(got.found, `${key}: the loaded configuration has no ${camel(splitKey(key).name)} where it should be`);
    let expected: unknown;
    if (!isNoDefault(fallback)) expected = setting(key).type.kind === 'path' && typeof fallback === 'string' ? path.resolve(source.dir, fallback) : fallback;
    else if (fallback.absent === 'none') expected = null;
    else {
      const derive = DERIVED.get(key);
      if (!derive) continue;
      expected = derive();
      if (key === 'fleet.gateway_id' && typeof expected === 'string' && !GATEWAY_ID.test(expected)) continue; // this host's name cannot be one
    }
    t.deepEqual(got.value, expected, `${key}: loaded as ${JSON.stringify(got.value)}, the table says ${JSON.stringify(expected)}`);
  }
});

test('every default, written out, is a value the loader accepts and loads unchanged', (t) => {
  const file: Record<string, Record<string, unknown>> = {};
  const provider: Record<string, unknown> = { ...MINIMAL.providers[0] };
  for (const key of SETTING_KEYS) {
    const fallback = setting(key).default;
    if (isNoDefault(fallback)) continue;
    const { section, name } = splitKey(key);
    if (section === 'providers[]') provider[name] = fallback;
    else (file[section] ??= {})[name] = fallback;
  }
  const explicit = loadText(stringifyYaml({ ...file, providers: [provider] }));
  const minimal = loadText(stringifyYaml(MINIMAL));
  const relative = (config: GatewayConfig, dir: string) => ({
    ...config,
    policy: { path: path.relative(dir, config.policy.path) },
    audit: { ...config.audit, path: path.relative(dir, config.audit.path), backupDir: path.relative(dir, config.audit.backupDir) },
  });
  t.deepEqual(relative(explicit.config, explicit.dir), relative(minimal.config, minimal.dir));
});

test('the table is frozen and self-consistent', (t) => {
  t.true(Object.isFrozen(SETTINGS));
  for (const key of SETTING_KEYS) {
    const s = setting(key);
    t.true(Object.isFrozen(s) && Object.isFrozen(s.type), `${key} is frozen`);
    t.regex(key, /^[a-z_]+(\[\])?\.[a-z_]+$/, `${key}: section.name`);
    t.true(s.doc.length > 0 && !s.doc.includes('\n'), `${key}: one line of doc`);
    const fallback = s.default;
    if (s.type.kind === 'enum' && typeof fallback === 'string') t.true(s.type.values.includes(fallback), `${key}: default among its values`);
    if (s.type.kind === 'integer' && typeof fallback === 'number') t.true(fallback >= s.type.min && fallback <= s.type.max, `${key}: default within bounds`);
  }
  t.deepEqual(ROOT_KEYS, ['server', 'providers', 'policy', 'audit', 'sentry', 'admin', 'limits', 'fleet', 'log']);
});

test('an unknown key is refused naming the keys the table allows there', (t) => {
  for (const [section, yaml] of [
    ['server', { ...MINIMAL, server: { hots: 'x' } }],
    ['providers[]', { providers: [{ ...MINIMAL.providers[0], api_key: 'x' }] }],
    ['limits', { ...MINIMAL, limits: { redis: 'x' } }],
  ] as const) {
    const err = t.throws(() => loadText(stringifyYaml(yaml)), { instanceOf: ConfigError });
    t.true(err?.message.endsWith(`unknown key (expected one of: ${sectionKeys(section).join(', ')})`), err?.message);
  }
  const err = t.throws(() => loadText(stringifyYaml({ ...MINIMAL, listen: 9000 })), { instanceOf: ConfigError });
  t.true(err?.message.endsWith(`unknown key (expected one of: ${ROOT_KEYS.join(', ')})`), err?.message);
});
