import path from 'node:path';
import cron from 'node-cron';
import { deepFreeze } from './deep-freeze.js';
import { YamlSource, type KeyPath } from './yaml-source.js';
import { readBoolean, readEnum, readInteger, readMap, readOptionalMap, readString, readStringList } from './validate.js';
import { readLimitsConfig, type LimitsConfig } from './limits-config.js';

export type OnWriteFailure = 'block' | 'allow';
export type SyncMode = 'FULL' | 'NORMAL';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

export interface ProviderConfig {
  readonly name: string;
  readonly baseUrl: URL;
  readonly apiKeyEnv: string | null;
  readonly models: readonly string[];
  readonly connectTimeoutMs: number;
  /** Reasoning models can think for minutes before the first byte, hence the long default. */
  readonly firstByteTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly maxConnections: number;
  /** Requests forwarded to this provider at once; past it the gateway answers 503 with Retry-After. */
  readonly maxInFlight: number;
  /** Re-sends after a connection failure, only while nothing has reached the client; off by default. */
  readonly retries: number;
  /** Sent as OpenAI-Organization / OpenAI-Project; the client's own are never relayed. */
  readonly organization: string | null;
  readonly project: string | null;
  /**
   * Whether realtime sessions and client secrets may be minted: they let the
   * client reach the provider directly, past the gateway's policy and audit.
   */
  readonly ephemeralCredentials: boolean;
}

export interface GatewayConfig {
  readonly file: string;
  readonly server: {
    readonly host: string;
    readonly port: number;
    readonly maxBodyBytes: number;
    /** The limit for multipart uploads (audio, images, files); OpenAI's own audio limit by default. */
    readonly maxUploadBytes: number;
    /** Longest a client may take to send its request headers: a slowloris client is cut off after it. */
    readonly headersTimeoutMs: number;
    /** Longest a client may take to send its whole request, body included. */
    readonly requestTimeoutMs: number;
    /** How long SIGTERM waits for in-flight requests and streams before closing them. */
    readonly drainTimeoutMs: number;
    /** Open client connections at once; a connection past it is answered 503 with Retry-After and closed. */
    readonly maxConnections: number;
  };
  readonly providers: readonly ProviderConfig[];
  readonly policy: { readonly path: string };
  readonly audit: {
    readonly path: string;
    readonly retentionDays: number;
    readonly cleanupSchedule: string;
    readonly onWriteFailure: OnWriteFailure;
    readonly synchronous: SyncMode;
    /** Past this the checkpointer waits briefly for readers so the WAL can restart (see wal-checkpointer.ts). */
    readonly walLimitBytes: number;
    /** node-cron expression, evaluated in UTC, for the online snapshot of the audit database. */
    readonly backupSchedule: string;
    readonly backupDir: string;
    /** Snapshots kept; older ones are deleted after each successful backup. */
    readonly backupKeep: number;
  };
  readonly sentry: { readonly dsnEnv: string };
  readonly limits: LimitsConfig;
  readonly log: { readonly level: LogLevel };
}

export const DEFAULT_CONFIG_FILE = 'config/gateway.yaml';

/** A path as users name it: relative to the directory the gateway runs in. */
export function displayPath(file: string): string {
  return path.relative(process.cwd(), file) || file;
}

/** `--config`, then `$GOVGATE_CONFIG`, then the default. */
export function resolveConfigFile(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env.GOVGATE_CONFIG ?? DEFAULT_CONFIG_FILE;
}

const MAX_MS = 24 * 60 * 60 * 1000;

/**
 * Reads and validates the gateway configuration once, into a frozen object.
 * Relative paths resolve against `cwd`, the directory the gateway was started in.
 */
export function loadGatewayConfig(file: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): GatewayConfig {
  const src: YamlSource = YamlSource.readFile(path.resolve(cwd, file), file);
  const root = readMap(src, [], src.value(), ['server', 'providers', 'policy', 'audit', 'sentry', 'limits', 'log']);

  const server = readOptionalMap(src, ['server'], root.server, ['host', 'port', 'max_body_bytes', 'max_upload_bytes', 'headers_timeout_ms', 'request_timeout_ms', 'drain_timeout_ms', 'max_connections']);
  const envPort = env.PORT;
  if (envPort !== undefined && envPort !== '' && !/^\d{1,5}$/.test(envPort)) {
    src.fail(['server', 'port'], `$PORT must be a port number, got "${envPort}"`);
  }
  // Validated even when $PORT overrides it: a typo in the file must not wait to surface until the day $PORT is unset.
  const filePort = readInteger(src, ['server', 'port'], server.port, { min: 0, max: 65535 }, 8080);
  const port = envPort ? Number(envPort) : filePort;
  if (port > 65535) src.fail(['server', 'port'], `$PORT must be at most 65535, got ${port}`);

  const headersTimeout = server.headers_timeout_ms;
  const requestTimeout = server.request_timeout_ms;
  if (typeof headersTimeout === 'number' && typeof requestTimeout === 'number' && headersTimeout > requestTimeout) {
    src.fail(['server', 'headers_timeout_ms'], 'must not be longer than server.request_timeout_ms');
  }
  const providerList: unknown = root.providers;
  if (!Array.isArray(providerList) || providerList.length === 0) {
    src.fail(['providers'], 'must be a non-empty list of providers');
  }
  const providers = providerList.map((raw: unknown, i: number) => readProvider(src, ['providers', i], raw));
  const names = new Set<string>();
  providers.forEach((p, i) => {
    if (names.has(p.name)) src.fail(['providers', i, 'name'], `duplicate provider name "${p.name}"`);
    names.add(p.name);
  });

  const policy = readMap(src, ['policy'], root.policy ?? { path: 'config/policy.yaml' }, ['path']);
  const audit = readOptionalMap(src, ['audit'], root.audit, [
    'path', 'retention_days', 'cleanup_schedule', 'on_write_failure', 'synchronous', 'wal_limit_bytes', 'backup_schedule', 'backup_dir', 'backup_keep',
  ]);
  const cleanupSchedule = readCron(src, ['audit', 'cleanup_schedule'], audit.cleanup_schedule, '0 2 * * 0');
  const backupSchedule = readCron(src, ['audit', 'backup_schedule'], audit.backup_schedule, '0 3 * * *');
  const sentry = readOptionalMap(src, ['sentry'], root.sentry, ['dsn_env']);
  const log = readOptionalMap(src, ['log'], root.log, ['level']);

  return deepFreeze({
    file,
    server: {
      host: readString(src, ['server', 'host'], server.host, '127.0.0.1'),
      port,
      maxBodyBytes: readInteger(src, ['server', 'max_body_bytes'], server.max_body_bytes, { min: 1, max: 1024 ** 3 }, 10 * 1024 * 1024),
      maxUploadBytes: readInteger(src, ['server', 'max_upload_bytes'], server.max_upload_bytes, { min: 1, max: 1024 ** 3 }, 25 * 1024 * 1024),
      headersTimeoutMs: readInteger(src, ['server', 'headers_timeout_ms'], server.headers_timeout_ms, { min: 100, max: MAX_MS }, 10_000),
      requestTimeoutMs: readInteger(src, ['server', 'request_timeout_ms'], server.request_timeout_ms, { min: 100, max: MAX_MS }, 300_000),
      drainTimeoutMs: readInteger(src, ['server', 'drain_timeout_ms'], server.drain_timeout_ms, { min: 0, max: MAX_MS }, 30_000),
      maxConnections: readInteger(src, ['server', 'max_connections'], server.max_connections, { min: 1, max: 1_000_000 }, 10_000),
    },
    providers,
    policy: { path: path.resolve(cwd, readString(src, ['policy', 'path'], policy.path, 'config/policy.yaml')) },
    audit: {
      path: path.resolve(cwd, readString(src, ['audit', 'path'], audit.path, 'data/audit.db')),
      retentionDays: readInteger(src, ['audit', 'retention_days'], audit.retention_days, { min: 1, max: 36500 }, 90),
      cleanupSchedule,
      onWriteFailure: readEnum(src, ['audit', 'on_write_failure'], audit.on_write_failure, ['block', 'allow'] as const, 'block'),
      synchronous: readEnum(src, ['audit', 'synchronous'], audit.synchronous, ['FULL', 'NORMAL'] as const, 'NORMAL'),
      walLimitBytes: readInteger(src, ['audit', 'wal_limit_bytes'], audit.wal_limit_bytes, { min: 1024 * 1024, max: 1024 ** 4 }, 64 * 1024 * 1024),
      backupSchedule,
      backupDir: path.resolve(cwd, readString(src, ['audit', 'backup_dir'], audit.backup_dir, 'data/backups')),
      backupKeep: readInteger(src, ['audit', 'backup_keep'], audit.backup_keep, { min: 1, max: 10_000 }, 7),
    },
    sentry: { dsnEnv: readString(src, ['sentry', 'dsn_env'], sentry.dsn_env, 'SENTRY_DSN') },
    limits: readLimitsConfig(src, root.limits),
    log: { level: readEnum(src, ['log', 'level'], log.level, ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info') },
  });
}

function readCron(src: YamlSource, at: KeyPath, value: unknown, fallback: string): string {
  const expression = readString(src, at, value, fallback);
  if (!cron.validate(expression)) src.fail(at, `"${expression}" is not a valid cron expression`);
  return expression;
}

/** A value sent as a header: printable ASCII, so it cannot split or smuggle a header line. */
function readHeaderValue(src: YamlSource, at: KeyPath, value: unknown): string {
  const text = readString(src, at, value);
  if (!/^[\x21-\x7e]{1,256}$/.test(text)) src.fail(at, 'must be 1 to 256 printable ASCII characters without spaces');
  return text;
}

function readProvider(src: YamlSource, at: KeyPath, raw: unknown): ProviderConfig {
  const p = readMap(src, at, raw, [
    'name', 'base_url', 'api_key_env', 'models', 'connect_timeout_ms', 'first_byte_timeout_ms', 'idle_timeout_ms', 'max_connections',
    'max_in_flight', 'retries', 'organization', 'project', 'ephemeral_credentials',
  ]);
  const baseUrlText = readString(src, [...at, 'base_url'], p.base_url);
  let baseUrl: URL;
  try {
    baseUrl = new URL(baseUrlText);
  } catch {
    src.fail([...at, 'base_url'], `"${baseUrlText}" is not a URL`);
  }
  if (baseUrl.protocol !== 'http:' && baseUrl.protocol !== 'https:') src.fail([...at, 'base_url'], 'must be an http:// or https:// URL');
  if (baseUrl.search || baseUrl.hash) src.fail([...at, 'base_url'], 'must not carry a query or fragment');
  const apiKeyEnv = p.api_key_env === undefined ? null : readString(src, [...at, 'api_key_env'], p.api_key_env);
  if (apiKeyEnv !== null && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(apiKeyEnv)) {
    src.fail([...at, 'api_key_env'], 'must name an environment variable (the key itself never goes in YAML)');
  }
  return {
    name: readString(src, [...at, 'name'], p.name),
    baseUrl,
    apiKeyEnv,
    models: readStringList(src, [...at, 'models'], p.models, ['*']),
    connectTimeoutMs: readInteger(src, [...at, 'connect_timeout_ms'], p.connect_timeout_ms, { min: 1, max: MAX_MS }, 10_000),
    firstByteTimeoutMs: readInteger(src, [...at, 'first_byte_timeout_ms'], p.first_byte_timeout_ms, { min: 1, max: MAX_MS }, 600_000),
    idleTimeoutMs: readInteger(src, [...at, 'idle_timeout_ms'], p.idle_timeout_ms, { min: 1, max: MAX_MS }, 300_000),
    maxConnections: readInteger(src, [...at, 'max_connections'], p.max_connections, { min: 1, max: 100_000 }, 1024),
    maxInFlight: readInteger(src, [...at, 'max_in_flight'], p.max_in_flight, { min: 1, max: 1_000_000 }, 2048),
    retries: readInteger(src, [...at, 'retries'], p.retries, { min: 0, max: 5 }, 0),
    organization: p.organization === undefined ? null : readHeaderValue(src, [...at, 'organization'], p.organization),
    project: p.project === undefined ? null : readHeaderValue(src, [...at, 'project'], p.project),
    ephemeralCredentials: readBoolean(src, [...at, 'ephemeral_credentials'], p.ephemeral_credentials, false),
  };
}
