import path from 'node:path';
import { deepFreeze } from './deep-freeze.js';
import { YamlSource } from './yaml-source.js';
import type { Plain } from './validate.js';
import { ENV_NAME, SETTINGS, keyPathOf, type EnumValue } from './settings.js';
import {
  parseUrlSetting,
  readBooleanSetting,
  readCronSetting,
  readEnumSetting,
  readIntegerSetting,
  readItem,
  readOptionalStringSetting,
  readPathSetting,
  readRoot,
  readSection,
  readStringListSetting,
  readStringSetting,
} from './read-setting.js';
import { readLimitsConfig, type LimitsConfig } from './limits-config.js';
import { readFleetConfig, type FleetConfig } from './fleet-config.js';

export type OnWriteFailure = EnumValue<'audit.on_write_failure'>;
export type SyncMode = EnumValue<'audit.synchronous'>;
export type WriterThread = EnumValue<'audit.writer_thread'>;
export type LogLevel = EnumValue<'log.level'>;

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
    /** auto: a thread of its own when the process may use a second core (app.ts). */
    readonly writerThread: WriterThread;
    /** Past this the checkpointer waits briefly for readers so the WAL can restart (see wal-checkpointer.ts). */
    readonly walLimitBytes: number;
    /** node-cron expression, evaluated in UTC, for the online snapshot of the audit database. */
    readonly backupSchedule: string;
    readonly backupDir: string;
    /** Snapshots kept; older ones are deleted after each successful backup. */
    readonly backupKeep: number;
  };
  readonly sentry: { readonly dsnEnv: string };
  /** The dashboard's token is read from the variable `tokenEnv` names; unset or empty, there is no dashboard. */
  readonly admin: { readonly tokenEnv: string };
  readonly limits: LimitsConfig;
  /** Null in single-node mode: keys live in the local SQLite file. */
  readonly fleet: FleetConfig | null;
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

/**
 * Reads and validates the gateway configuration once, into a frozen object.
 * Relative paths resolve against `cwd`, the directory the gateway was started in.
 * Defaults, bounds and allowed keys come from the table in settings.ts.
 */
export function loadGatewayConfig(file: string, env: NodeJS.ProcessEnv = process.env, cwd = process.cwd()): GatewayConfig {
  const src: YamlSource = YamlSource.readFile(path.resolve(cwd, file), file);
  const root = readRoot(src, src.value());

  const server = readSection(src, 'server', root.server);
  const port = readPort(src, server, env.PORT);
  const providers = readProviders(src, root.providers);
  const policy = readSection(src, 'policy', root.policy);
  const audit = readSection(src, 'audit', root.audit);
  const cleanupSchedule = readCronSetting(src, audit, 'audit.cleanup_schedule');
  const backupSchedule = readCronSetting(src, audit, 'audit.backup_schedule');
  const sentry = readSection(src, 'sentry', root.sentry);
  const admin = readSection(src, 'admin', root.admin);
  const log = readSection(src, 'log', root.log);

  return deepFreeze({
    file,
    server: readServer(src, server, port),
    providers,
    policy: { path: readPathSetting(src, policy, 'policy.path', cwd) },
    audit: {
      path: readPathSetting(src, audit, 'audit.path', cwd),
      retentionDays: readIntegerSetting(src, audit, 'audit.retention_days'),
      cleanupSchedule,
      onWriteFailure: readEnumSetting(src, audit, 'audit.on_write_failure'),
      synchronous: readEnumSetting(src, audit, 'audit.synchronous'),
      writerThread: readEnumSetting(src, audit, 'audit.writer_thread'),
      walLimitBytes: readIntegerSetting(src, audit, 'audit.wal_limit_bytes'),
      backupSchedule,
      backupDir: readPathSetting(src, audit, 'audit.backup_dir', cwd),
      backupKeep: readIntegerSetting(src, audit, 'audit.backup_keep'),
    },
    sentry: { dsnEnv: readEnvName(src, sentry, 'sentry.dsn_env', 'the DSN itself never goes in YAML') },
    admin: { tokenEnv: readEnvName(src, admin, 'admin.token_env', 'the token itself never goes in YAML') },
    limits: readLimitsConfig(src, root.limits),
    fleet: readFleetConfig(src, root.fleet),
    log: { level: readEnumSetting(src, log, 'log.level') },
  });
}

/**
 * server.port, or $PORT over it; read (with the timeouts' order) before the
 * other sections, so these errors are the first a broken file reports.
 */
function readPort(src: YamlSource, server: Plain, envPort: string | undefined): number {
  const portAt = keyPathOf('server.port');
  if (envPort !== undefined && envPort !== '' && !/^\d{1,5}$/.test(envPort)) {
    src.fail(portAt, `$PORT must be a port number, got "${envPort}"`);
  }
  // Validated even when $PORT overrides it: a typo in the file must not wait to surface until the day $PORT is unset.
  const filePort = readIntegerSetting(src, server, 'server.port');
  const port = envPort ? Number(envPort) : filePort;
  const maxPort = SETTINGS['server.port'].type.max;
  if (port > maxPort) src.fail(portAt, `$PORT must be at most ${maxPort}, got ${port}`);

  const headersTimeout = server.headers_timeout_ms;
  const requestTimeout = server.request_timeout_ms;
  if (typeof headersTimeout === 'number' && typeof requestTimeout === 'number' && headersTimeout > requestTimeout) {
    src.fail(keyPathOf('server.headers_timeout_ms'), 'must not be longer than server.request_timeout_ms');
  }
  return port;
}

function readServer(src: YamlSource, server: Plain, port: number): GatewayConfig['server'] {
  return {
    host: readStringSetting(src, server, 'server.host'),
    port,
    maxBodyBytes: readIntegerSetting(src, server, 'server.max_body_bytes'),
    maxUploadBytes: readIntegerSetting(src, server, 'server.max_upload_bytes'),
    headersTimeoutMs: readIntegerSetting(src, server, 'server.headers_timeout_ms'),
    requestTimeoutMs: readIntegerSetting(src, server, 'server.request_timeout_ms'),
    drainTimeoutMs: readIntegerSetting(src, server, 'server.drain_timeout_ms'),
    maxConnections: readIntegerSetting(src, server, 'server.max_connections'),
  };
}

/** A setting that names the environment variable holding a secret, never the secret. */
function readEnvName(src: YamlSource, map: Plain, key: 'admin.token_env' | 'sentry.dsn_env', why: string): string {
  const name = readStringSetting(src, map, key);
  if (!ENV_NAME.test(name)) src.fail(keyPathOf(key), `must name an environment variable (${why})`);
  return name;
}

/** `providers:`, a non-empty list with unique names. */
function readProviders(src: YamlSource, raw: unknown): ProviderConfig[] {
  if (!Array.isArray(raw) || raw.length === 0) {
    src.fail(['providers'], 'must be a non-empty list of providers');
  }
  const providers = raw.map((item: unknown, i: number) => readProvider(src, i, item));
  const names = new Set<string>();
  providers.forEach((p, i) => {
    if (names.has(p.name)) src.fail(keyPathOf('providers[].name', i), `duplicate provider name "${p.name}"`);
    names.add(p.name);
  });
  return providers;
}

/** A value sent as a header: printable ASCII, so it cannot split or smuggle a header line. */
function readHeaderValue(src: YamlSource, map: Plain, key: 'providers[].organization' | 'providers[].project', index: number): string | null {
  const text = readOptionalStringSetting(src, map, key, index);
  if (text !== null && !/^[\x21-\x7e]{1,256}$/.test(text)) src.fail(keyPathOf(key, index), 'must be 1 to 256 printable ASCII characters without spaces');
  return text;
}

function readProvider(src: YamlSource, index: number, raw: unknown): ProviderConfig {
  const p = readItem(src, 'providers[]', index, raw);
  const baseUrlAt = keyPathOf('providers[].base_url', index);
  const baseUrl = parseUrlSetting(src, 'providers[].base_url', readStringSetting(src, p, 'providers[].base_url', index), 'an http:// or https:// URL', index);
  if (baseUrl.search || baseUrl.hash) src.fail(baseUrlAt, 'must not carry a query or fragment');
  const apiKeyEnv = readOptionalStringSetting(src, p, 'providers[].api_key_env', index);
  if (apiKeyEnv !== null && !ENV_NAME.test(apiKeyEnv)) {
    src.fail(keyPathOf('providers[].api_key_env', index), 'must name an environment variable (the key itself never goes in YAML)');
  }
  return {
    name: readStringSetting(src, p, 'providers[].name', index),
    baseUrl,
    apiKeyEnv,
    models: readStringListSetting(src, p, 'providers[].models', index),
    connectTimeoutMs: readIntegerSetting(src, p, 'providers[].connect_timeout_ms', index),
    firstByteTimeoutMs: readIntegerSetting(src, p, 'providers[].first_byte_timeout_ms', index),
    idleTimeoutMs: readIntegerSetting(src, p, 'providers[].idle_timeout_ms', index),
    maxConnections: readIntegerSetting(src, p, 'providers[].max_connections', index),
    maxInFlight: readIntegerSetting(src, p, 'providers[].max_in_flight', index),
    retries: readIntegerSetting(src, p, 'providers[].retries', index),
    organization: readHeaderValue(src, p, 'providers[].organization', index),
    project: readHeaderValue(src, p, 'providers[].project', index),
    ephemeralCredentials: readBooleanSetting(src, p, 'providers[].ephemeral_credentials', index),
  };
}
