import { deepFreeze } from './deep-freeze.js';
import type { KeyPath } from './yaml-source.js';

/**
 * Every scalar setting of config/gateway.yaml, in one declarative table: its
 * type (with bounds or allowed values), its default and one line of doc.
 *
 * The loaders (gateway-config.ts, limits-config.ts, fleet-config.ts) take their
 * defaults, bounds and allowed keys from here, and test/config/settings-table.test.ts
 * checks the tables in docs/configuration.md and the shipped config/gateway.yaml
 * against it. A new setting is added here first.
 *
 * Keys are dotted paths; `providers[].name` is a key of every item of the
 * `providers` list. The order of the table is the order in which keys are
 * listed in "unknown key (expected one of: …)" messages.
 */

/** What an `env-name` setting must look like: the name of an environment variable, never its value. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The longest duration any `*_ms` setting accepts: one day. */
export const MAX_MS = 24 * 60 * 60 * 1000;

export interface IntegerType {
  readonly kind: 'integer';
  readonly min: number;
  readonly max: number;
}
export interface EnumType {
  readonly kind: 'enum';
  readonly values: readonly string[];
}
export interface BooleanType {
  readonly kind: 'boolean';
}
export interface StringListType {
  readonly kind: 'string-list';
}
/** Strings, checked further by the loader according to `kind`. */
export interface TextType {
  readonly kind: 'string' | 'path' | 'cron' | 'env-name' | 'header-value' | 'gateway-id';
}
export interface UrlType {
  readonly kind: 'url';
  /** Accepted URL schemes, as `URL.protocol` spells them (`https:`). */
  readonly schemes: readonly string[];
}
export type SettingType = IntegerType | EnumType | BooleanType | StringListType | TextType | UrlType;
export type SettingKind = SettingType['kind'];

/** The loader refuses a file without the key. */
export interface Required {
  readonly absent: 'required';
}
/** Absent means off: the loaded configuration holds null. */
export interface None {
  readonly absent: 'none';
}
/** Computed when the file is loaded; `from` says from what, as the docs put it. */
export interface Derived {
  readonly absent: 'derived';
  readonly from: string;
}
export type NoDefault = Required | None | Derived;

interface Described {
  /** One line: what the setting is for. docs/configuration.md says more. */
  readonly doc: string;
  /** Printed in parentheses after the default in the docs (`25 MiB`). */
  readonly defaultNote?: string;
}

/** The type and the default go together: an integer setting cannot default to a string. */
export type Setting = Described &
  (
    | { readonly type: IntegerType; readonly default: number | Required }
    | { readonly type: EnumType; readonly default: string | Required }
    | { readonly type: BooleanType; readonly default: boolean }
    | { readonly type: StringListType; readonly default: readonly string[] | Required }
    | { readonly type: TextType | UrlType; readonly default: string | NoDefault }
  );

const REQUIRED = { absent: 'required' } as const;
const NONE = { absent: 'none' } as const;

const integer = <const Min extends number, const Max extends number>(min: Min, max: Max) => ({ kind: 'integer', min, max }) as const;
const oneOf = <const V extends readonly string[]>(...values: V) => ({ kind: 'enum', values }) as const;
const text = <const K extends TextType['kind']>(kind: K) => ({ kind }) as const;
const url = <const S extends readonly string[]>(...schemes: S) => ({ kind: 'url', schemes }) as const;
const BOOLEAN = { kind: 'boolean' } as const;
const STRING_LIST = { kind: 'string-list' } as const;

const TABLE = {
  'server.host': { type: text('string'), default: '127.0.0.1', doc: 'listen address' },
  'server.port': { type: integer(0, 65535), default: 8080, doc: 'listen port; $PORT overrides it' },
  'server.max_body_bytes': { type: integer(1, 1024 ** 3), default: 10 * 1024 * 1024, defaultNote: '10 MiB', doc: 'larger request bodies get 413' },
  'server.max_upload_bytes': {
    type: integer(1, 1024 ** 3),
    default: 25 * 1024 * 1024,
    defaultNote: "25 MiB, OpenAI's audio limit",
    doc: 'the same for multipart uploads (audio, images, files)',
  },
  'server.headers_timeout_ms': { type: integer(100, MAX_MS), default: 10_000, doc: 'longest a client may take to send its request headers (slowloris)' },
  'server.request_timeout_ms': { type: integer(100, MAX_MS), default: 300_000, doc: 'longest a client may take to send its whole request' },
  'server.drain_timeout_ms': { type: integer(0, MAX_MS), default: 30_000, doc: 'how long SIGTERM waits for in-flight requests and streams' },
  'server.max_connections': { type: integer(1, 1_000_000), default: 10_000, doc: 'open client connections at once; past it 503 and close' },

  'providers[].name': { type: text('string'), default: REQUIRED, doc: 'unique name, shown in audit rows and usable in rules' },
  'providers[].base_url': { type: url('http:', 'https:'), default: REQUIRED, doc: "where the provider's API lives" },
  'providers[].api_key_env': { type: text('env-name'), default: NONE, doc: "environment variable holding the provider's key" },
  'providers[].models': { type: STRING_LIST, default: ['*'], doc: 'model globs this provider serves; the first match wins' },
  'providers[].connect_timeout_ms': { type: integer(1, MAX_MS), default: 10_000, doc: 'longest wait for the connection to the provider' },
  'providers[].first_byte_timeout_ms': { type: integer(1, MAX_MS), default: 600_000, doc: 'longest wait for the response headers' },
  'providers[].idle_timeout_ms': { type: integer(1, MAX_MS), default: 300_000, doc: 'longest silence between two chunks of a response' },
  'providers[].max_connections': { type: integer(1, 100_000), default: 1024, doc: 'keep-alive pool size towards the provider' },
  'providers[].max_in_flight': { type: integer(1, 1_000_000), default: 2048, doc: 'requests forwarded at once; past it 503' },
  'providers[].retries': { type: integer(0, 5), default: 0, doc: 're-sends of a request whose connection could not be made' },
  'providers[].organization': { type: text('header-value'), default: NONE, doc: 'sent as OpenAI-Organization' },
  'providers[].project': { type: text('header-value'), default: NONE, doc: 'sent as OpenAI-Project' },
  'providers[].ephemeral_credentials': { type: BOOLEAN, default: false, doc: 'whether realtime sessions and client secrets may be minted' },

  'policy.path': { type: text('path'), default: 'config/policy.yaml', doc: 'the policy file, watched for edits' },

  'audit.path': { type: text('path'), default: 'data/audit.db', doc: 'the SQLite audit database' },
  'audit.retention_days': { type: integer(1, 36500), default: 90, doc: 'rows older than this are deleted by the cleanup job' },
  'audit.cleanup_schedule': { type: text('cron'), default: '0 2 * * 0', doc: 'when the cleanup job runs (node-cron, UTC)' },
  'audit.on_write_failure': { type: oneOf('block', 'allow'), default: 'block', doc: 'what happens to a request whose audit row cannot be written' },
  'audit.synchronous': { type: oneOf('FULL', 'NORMAL'), default: 'NORMAL', doc: 'SQLite synchronous mode' },
  'audit.writer_thread': { type: oneOf('auto', 'on', 'off'), default: 'auto', doc: 'whether the audit writer commits on a thread of its own' },
  'audit.wal_limit_bytes': {
    type: integer(1024 * 1024, 1024 ** 4),
    default: 64 * 1024 * 1024,
    defaultNote: '64 MiB',
    doc: 'WAL size past which the checkpointer waits for readers',
  },
  'audit.backup_schedule': { type: text('cron'), default: '0 3 * * *', doc: 'when the online snapshot runs (node-cron, UTC)' },
  'audit.backup_dir': { type: text('path'), default: 'data/backups', doc: 'where snapshots go' },
  'audit.backup_keep': { type: integer(1, 10_000), default: 7, doc: 'snapshots kept' },

  'sentry.dsn_env': { type: text('env-name'), default: 'SENTRY_DSN', doc: 'environment variable holding the Sentry DSN' },

  'admin.token_env': { type: text('env-name'), default: 'GOVGATE_ADMIN_TOKEN', doc: 'environment variable holding the admin dashboard token' },

  'limits.store': { type: oneOf('memory', 'redis'), default: 'memory', doc: 'where rate limit and token budget counters live' },
  'limits.redis_url': {
    type: url('redis:', 'rediss:'),
    default: NONE,
    defaultNote: 'required with `limits.store: redis`',
    doc: 'the Redis server, without a password',
  },
  'limits.redis_password_env': { type: text('env-name'), default: NONE, doc: 'environment variable holding the Redis password' },
  'limits.on_store_failure': { type: oneOf('block', 'allow'), default: 'block', doc: 'what happens to a limited request when Redis cannot be reached' },
  'limits.default_token_reservation': { type: integer(0, 10_000_000), default: 1024, doc: 'completion tokens reserved for a request without max_tokens' },

  'fleet.database_url_env': {
    type: text('env-name'),
    default: NONE,
    defaultNote: 'single-node mode',
    doc: "environment variable holding the fleet's PostgreSQL URL; setting it turns on fleet mode",
  },
  'fleet.gateway_id': { type: text('gateway-id'), default: { absent: 'derived', from: 'the host name' }, doc: 'names this gateway in the central tables' },

  'log.level': {
    type: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
    default: 'info',
    doc: 'the least severe log level written',
  },
} as const satisfies Readonly<Record<string, Setting>>;

type Table = typeof TABLE;
export type SettingKey = keyof Table;

/** The table, frozen all the way down. */
export const SETTINGS: Table = deepFreeze(TABLE);

/** Every key, in table order. */
export const SETTING_KEYS: readonly SettingKey[] = Object.freeze(Object.keys(SETTINGS).filter(isSettingKey));

export function isSettingKey(key: string): key is SettingKey {
  return Object.hasOwn(SETTINGS, key);
}

/** The keys whose type is of `kind`. */
export type KeyOfKind<K extends SettingKind> = { [P in SettingKey]: Table[P]['type']['kind'] extends K ? P : never }[SettingKey];
/** The keys whose default is of type `D` (a value, or one of the NoDefault forms). */
export type KeyWithDefault<D> = { [P in SettingKey]: Table[P]['default'] extends D ? P : never }[SettingKey];
/** The values an enum setting allows, as a union type. */
export type EnumValue<P extends KeyOfKind<'enum'>> = Table[P]['type'] extends { readonly values: readonly (infer V extends string)[] } ? V : never;

/** The setting's key split into the section it lives in (`providers[]`, `server`) and its own name. */
export function splitKey(key: SettingKey): { readonly section: string; readonly name: string } {
  const dot = key.lastIndexOf('.');
  return { section: key.slice(0, dot), name: key.slice(dot + 1) };
}

function sectionName(section: string): string {
  return section.endsWith('[]') ? section.slice(0, -2) : section;
}

/** Where the setting sits in the file; `index` picks the list item for `providers[]` keys. */
export function keyPathOf(key: SettingKey, index?: number): KeyPath {
  const { section, name } = splitKey(key);
  if (section.endsWith('[]')) {
    if (index === undefined) throw new Error(`${key} is a key of a list item: give its index`);
    return [sectionName(section), index, name];
  }
  if (index !== undefined) throw new Error(`${key} is not a key of a list item`);
  return [section, name];
}

/** The keys a section allows, in table order: `sectionKeys('server')`, `sectionKeys('providers[]')`. */
export function sectionKeys(section: string): readonly string[] {
  const keys = SETTING_KEYS.filter((key) => splitKey(key).section === section).map((key) => splitKey(key).name);
  if (keys.length === 0) throw new Error(`no settings in section "${section}"`);
  return Object.freeze(keys);
}

/** The top-level keys of the file, in table order. */
export const ROOT_KEYS: readonly string[] = Object.freeze([...new Set(SETTING_KEYS.map((key) => sectionName(splitKey(key).section)))]);

/** Whether a URL's protocol (`https:`) is one a `url` setting accepts. */
export function allowsScheme(type: UrlType, protocol: string): boolean {
  return type.schemes.includes(protocol);
}

export function isNoDefault(value: Setting['default']): value is NoDefault {
  return typeof value === 'object' && !Array.isArray(value) && 'absent' in value;
}

// --- How docs/configuration.md shows a setting: the cells its tables are checked against.

function listOf(items: readonly string[], last: string): string {
  return items.length < 2 ? items.join('') : `${items.slice(0, -1).join(', ')} ${last} ${items[items.length - 1]}`;
}

/** The `type` cell of a setting's row. */
export function describeType(type: SettingType): string {
  switch (type.kind) {
    case 'integer':
      return `integer, ${type.min} to ${type.max}`;
    case 'enum':
      return listOf(type.values.map((v) => `\`${v}\``), 'or');
    case 'boolean':
      return '`true` or `false`';
    case 'string-list':
      return 'list of strings';
    case 'url':
      return `${listOf(type.schemes.map((s) => `\`${s}//\``), 'or')} URL`;
    case 'string':
      return 'string';
    case 'path':
      return 'path';
    case 'cron':
      return 'cron expression';
    case 'env-name':
      return 'environment variable name';
    case 'header-value':
      return 'header value';
    case 'gateway-id':
      return 'gateway id';
  }
}

/** A default as written in YAML: strings with spaces are quoted, lists in flow style. */
export function yamlLiteral(value: number | string | boolean | readonly string[]): string {
  if (Array.isArray(value)) return `[${value.map((v) => JSON.stringify(v)).join(', ')}]`;
  if (typeof value === 'string' && /\s/.test(value)) return JSON.stringify(value);
  return String(value);
}

/** The `default` cell of a setting's row. */
export function describeDefault(setting: Setting): string {
  const value = setting.default;
  let out: string;
  if (!isNoDefault(value)) out = `\`${yamlLiteral(value)}\``;
  else if (value.absent === 'derived') out = value.from;
  else out = value.absent;
  return setting.defaultNote === undefined ? out : `${out} (${setting.defaultNote})`;
}
