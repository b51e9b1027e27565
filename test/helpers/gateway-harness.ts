import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { startGateway, type RunningGateway } from '../../gateway/app.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { createKey, revokeKey } from '../../gateway/auth/key-store.js';
import { loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { createErrorReporter, type ErrorReporter } from '../../gateway/observability/error-reporter.js';
import { createLogger } from '../../gateway/observability/logger.js';

export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
/** The policy tests run under by default: a fixture, never the working config/policy.yaml an admin may be editing. */
export const FIXTURE_POLICY = readFileSync(path.join(REPO_ROOT, 'test/fixtures/policy.yaml'), 'utf8');
export const UPSTREAM_SECRET = 'sk-upstream-test-secret';

export interface ProviderSpec {
  name: string;
  base_url: string;
  models?: string[];
  api_key_env?: string;
  connect_timeout_ms?: number;
  first_byte_timeout_ms?: number;
  idle_timeout_ms?: number;
  max_in_flight?: number;
  retries?: number;
  /** Sent upstream as OpenAI-Organization. */
  organization?: string;
  /** Sent upstream as OpenAI-Project. */
  project?: string;
  /** Whether realtime client secrets / sessions (credentials that bypass the gateway) may be minted. */
  ephemeral_credentials?: boolean;
}

export interface HarnessOptions {
  /** Policy YAML; the shipped config/policy.yaml by default. */
  policy?: string;
  /** Providers; by default one `openai` provider pointing at `upstreamUrl`. */
  providers?: ProviderSpec[];
  audit?: Partial<{
    path: string;
    retention_days: number;
    cleanup_schedule: string;
    on_write_failure: 'block' | 'allow';
    synchronous: 'FULL' | 'NORMAL';
    backup_schedule: string;
    backup_dir: string;
    backup_keep: number;
    wal_limit_bytes: number;
    writer_thread: 'auto' | 'on' | 'off';
  }>;
  maxBodyBytes?: number;
  /** Extra `server:` keys, e.g. timeouts. */
  server?: Partial<{
    headers_timeout_ms: number;
    request_timeout_ms: number;
    drain_timeout_ms: number;
    max_connections: number;
    /** The limit for multipart uploads (server.max_upload_bytes). */
    max_upload_bytes: number;
  }>;
  env?: NodeJS.ProcessEnv;
  reporter?: ErrorReporter;
  /** The `limits:` section of gateway.yaml. */
  limits?: Record<string, unknown>;
  /** The `admin:` section of gateway.yaml. */
  admin?: { token_env: string };
}

export interface Harness {
  readonly dir: string;
  readonly configFile: string;
  readonly policyFile: string;
  readonly dbPath: string;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  /** url + '/v1', what OPENAI_BASE_URL is set to. */
  readonly baseURL: string;
  readonly gateway: RunningGateway;
  /** Every JSON log line the gateway wrote. */
  readonly logs: string[];
  /** Creates a key with the real key store and returns its secret and id. */
  createKey(customer?: string, name?: string): { key: string; id: string };
  revoke(keyId: string): void;
  /** The official SDK configured only through OPENAI_BASE_URL and OPENAI_API_KEY, without retries. */
  sdk(key: string): OpenAI;
  close(): Promise<void>;
}

export interface LogLine {
  level: number;
  msg?: string;
}

/**
 * Runs `build` with the environment variables set, then puts back what was
 * there: the SDK reads its configuration once, when it is constructed, and
 * the next test in this process must not inherit another gateway's URL or key.
 */
export function withEnv<T>(vars: Record<string, string>, build: () => T): T {
  const before = Object.fromEntries(Object.keys(vars).map((name) => [name, process.env[name]]));
  Object.assign(process.env, vars);
  try {
    return build();
  } finally {
    for (const [name, value] of Object.entries(before)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
  }
}

/** The gateway's log lines at level error (50) or above, parsed. */
export function errorLogs(gw: Pick<Harness, 'logs'>): LogLine[] {
  return gw.logs
    .map((line) => {
      try {
        return JSON.parse(line) as LogLine;
      } catch {
        return undefined;
      }
    })
    .filter((l): l is LogLine => l !== undefined && l.level >= 50);
}

/** Writes a gateway.yaml for the options into `dir` and returns its path. */
export function writeGatewayYaml(dir: string, upstreamUrl: string, opts: HarnessOptions = {}): string {
  const providers = opts.providers ?? [{ name: 'openai', base_url: upstreamUrl, models: ['*'], api_key_env: 'OPENAI_API_KEY' }];
  const audit = { path: 'data/audit.db', retention_days: 90, cleanup_schedule: '0 2 * * 0', on_write_failure: 'block', synchronous: 'NORMAL', ...opts.audit };
  const config = {
    server: { host: '127.0.0.1', port: 0, max_body_bytes: opts.maxBodyBytes ?? 10 * 1024 * 1024, ...opts.server },
    providers,
    policy: { path: 'config/policy.yaml' },
    audit,
    sentry: { dsn_env: 'SENTRY_DSN' },
    ...(opts.limits ? { limits: opts.limits } : {}),
    ...(opts.admin ? { admin: opts.admin } : {}),
    log: { level: 'info' },
  };
  const file = path.join(dir, 'config/gateway.yaml');
  writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/** A temporary directory laid out like a checkout: config/ and data/. */
export function makeGatewayDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-test-'));
  mkdirSync(path.join(dir, 'config'));
  return dir;
}

/** Starts a real gateway in this process on port 0, in a fresh directory, against `upstreamUrl`. */
export async function startHarness(upstreamUrl: string, opts: HarnessOptions = {}): Promise<Harness> {
  const dir = makeGatewayDir();
  const configFile = writeGatewayYaml(dir, upstreamUrl, opts);
  const policyFile = path.join(dir, 'config/policy.yaml');
  writeFileSync(policyFile, opts.policy ?? FIXTURE_POLICY);

  const env = opts.env ?? { OPENAI_API_KEY: UPSTREAM_SECRET };
  const config = loadGatewayConfig('config/gateway.yaml', env, dir);
  const logs: string[] = [];
  const logger = createLogger('info', { write: (line: string) => void logs.push(line) });
  const reporter = opts.reporter ?? createErrorReporter(undefined, 'test');
  const gateway = await startGateway(config, { logger, reporter, env });
  const dbPath = config.audit.path;
  const keysDb = openDatabase(dbPath, { synchronous: 'NORMAL' });

  return {
    dir,
    configFile,
    policyFile,
    dbPath,
    url: gateway.url,
    baseURL: `${gateway.url}/v1`,
    gateway,
    logs,
    createKey(customer = 'acme', name) {
      const created = createKey(keysDb, customer, name ?? null);
      // The registry polls for changes; refreshing here keeps tests from waiting on the poll.
      gateway.context.keys.refreshIfChanged();
      return { key: created.key, id: created.id };
    },
    revoke(keyId) {
      revokeKey(keysDb, keyId);
    },
    sdk(key) {
      return withEnv({ OPENAI_BASE_URL: `${gateway.url}/v1`, OPENAI_API_KEY: key }, () => new OpenAI({ maxRetries: 0 }));
    },
    async close() {
      try {
        await gateway.close(2000);
      } finally {
        keysDb.close();
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
