import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { adminTokenProblem } from './admin/admin-auth.js';
import { AdminRoutes } from './admin/admin-routes.js';
import { AuditWriter, type AuditLog, type AuditWriterHooks, type RunningAuditWriter } from './audit/audit-writer.js';
import { AuditWriterThread } from './audit/writer-thread.js';
import { controlEvent, GATEWAY_ACTOR, policyVersionRow } from './audit/control-log.js';
import { latestAnchors } from './audit/retention.js';
import { BatchInputFiles } from './audit/batch-files.js';
import { scheduleBackup } from './audit/backup-schedule.js';
import { scheduleCleanup } from './audit/cleanup-schedule.js';
import { openDatabase, type Db } from './store/connection.js';
import { WalCheckpointer } from './audit/wal-checkpointer.js';
import { AuditHealth } from './audit/audit-health.js';
import { StoreFile, storeWriteProblem, type WriteAccess } from './store/store-file.js';
import { GatewayMetrics } from './observability/metrics.js';
import { KeyRegistry } from './auth/key-registry.js';
import { SqliteKeySource } from './auth/sqlite-key-source.js';
import { openCentralDashboard } from './fleet/central-dashboard.js';
import { openFleetGateway, type FleetGateway } from './fleet/fleet-gateway.js';
import { startFleetShipping } from './fleet/fleet-shipping.js';
import { localShippedThrough } from './fleet/local-watermark.js';
import { createLimiter } from './limits/create-limiter.js';
import { displayPath, type GatewayConfig } from './config/gateway-config.js';
import type { GatewayContext } from './http/context.js';
import { createGatewayServer } from './http/server.js';
import { errorSummary } from './observability/error-summary.js';
import type { ErrorReporter } from './observability/error-reporter.js';
import type { Logger } from './observability/logger.js';
import { loadPolicyFile } from './policy/compile-policy.js';
import type { CompiledPolicy } from './policy/policy-types.js';
import { VERSION } from './config/version.js';
import { PolicyWatcher } from './policy/policy-watcher.js';
import { ProviderRouter } from './proxy/provider-router.js';

export interface RunningGateway {
  readonly url: string;
  readonly port: number;
  readonly context: GatewayContext;
  readonly db: Db;
  /** Stops accepting, waits for in-flight requests up to `drainMs` (server.drain_timeout_ms), flushes the audit log and closes everything. */
  close(drainMs?: number): Promise<void>;
}

export interface StartOptions {
  readonly logger: Logger;
  readonly reporter: ErrorReporter;
  readonly env?: NodeJS.ProcessEnv;
  /** Who the gateway runs as, for the audit store's start-up check; the process itself unless a test stands in for another user. */
  readonly writeAccess?: WriteAccess;
}

/**
 * The event loop never sleeps on a taken lock: the audit writer retries
 * asynchronously, since SQLite's busy handler would sleep on the thread that
 * serves every request (docs/design/audit-writer.md, "The writer never sleeps on a lock").
 */
const WRITER_BUSY_TIMEOUT_MS = 0;
const SHUTDOWN_BUSY_TIMEOUT_MS = 5000;

/** How often one checkpoint failure code may be logged: the checkpointer retries many times a second. */
export const CHECKPOINT_LOG_INTERVAL_MS = 60_000;

/**
 * Lets through the first occurrence of each code per `intervalMs` and counts
 * the rest, handing the count to the next one let through, so a failure that
 * repeats ten times a second is one line a minute that says how many it stands for.
 */
export function throttleByCode(intervalMs: number, emit: (code: string, suppressed: number) => void, now: () => number = Date.now): (code: string) => void {
  const seen = new Map<string, { at: number; suppressed: number }>();
  return (code) => {
    const t = now();
    const last = seen.get(code);
    if (last && t - last.at < intervalMs) {
      last.suppressed++;
      return;
    }
    seen.set(code, { at: t, suppressed: 0 });
    emit(code, last?.suppressed ?? 0);
  };
}

/** SHA-256 of the effective configuration (after defaults and $PORT), so `gateway.started` tells two starts' settings apart. */
function configHash(config: GatewayConfig): string {
  const json = JSON.stringify(config, (_key, value: unknown) => (value instanceof Map ? [...value] : value));
  return createHash('sha256').update(json).digest('hex');
}

/** Wires the pipeline stages together and starts listening. */
export async function startGateway(config: GatewayConfig, options: StartOptions): Promise<RunningGateway> {
  const { logger, reporter } = options;
  const env = options.env ?? process.env;
  const initialPolicy = checkStart(config, env, options.writeAccess);
  // In fleet mode keys come from PostgreSQL; connected before the SQLite file so a refused start leaves neither open.
  const fleet = config.fleet ? await openFleetGateway(config.fleet, config.file, env, { logger, reporter }) : null;
  // If the checkpoint thread dies, the writer's connection (on the event loop or on its own thread) checkpoints inline.
  const { db, storeFile, checkpointer } = openAuditStore(config, logger, reporter, () => audit.checkpointAfterCommits());
  const keys = new KeyRegistry(fleet ? fleet.keys : new SqliteKeySource(db));
  const metrics = new GatewayMetrics(() => audit.queued, () => statSync(`${config.audit.path}-wal`, { throwIfNoEntry: false })?.size ?? 0);
  metrics.policyLoaded(initialPolicy.hash);
  const audit = createAuditWriter(config, db, storeFile, metrics, logger, reporter);
  // Queued before the first request can be decided: the policy's text is committed before any row that names it.
  audit.recordControl(controlEvent('gateway.started', GATEWAY_ACTOR, { version: VERSION, config_hash: configHash(config), pid: process.pid }));
  const policy = watchPolicy(config, initialPolicy, audit, metrics, logger, reporter);
  const providers = new ProviderRouter(config.providers, env);
  // Names the variable and the provider, never its value.
  for (const problem of providers.problems) logger.warn({ provider: problem.provider, env: problem.env, problem: problem.kind }, problem.message);
  const limiter = await createLimiter(config.limits, db, env, logger, reporter);
  const health = new AuditHealth(db, audit, storeFile);
  const batchFiles = new BatchInputFiles(db, audit);
  const context: GatewayContext = { config, keys, policy, audit, batchFiles, providers, limiter, logger, reporter, metrics, auditWritable: () => health.writable() };
  const dashboard = openDashboard(config, env, audit, policy, logger);
  const { server, closeUpgrades, settled } = createGatewayServer(context, dashboard?.admin ?? null);
  // The checkpointer's descriptor last: closing it earlier would drop the connections' locks (wal-checkpointer.ts).
  const closeResources = async () => {
    await Promise.all([providers.close(), checkpointer.stop(), limiter.close(), fleet?.close(), dashboard?.close(), audit.close(0)]);
    db.close();
    checkpointer.release();
  };
  await listen(server, config, closeResources);

  const background = startBackground(config, { db, audit, checkpointer, metrics, keys, policy, fleet }, logger, reporter);
  const { port } = server.address() as AddressInfo;
  const host = config.server.host.includes(':') ? `[${config.server.host}]` : config.server.host;
  let closing: Promise<void> | null = null;

  return {
    url: `http://${host}:${port}`,
    port,
    context,
    db,
    close(drainMs = config.server.drainTimeoutMs) {
      closing ??= (async () => {
        await background.stopSchedules();
        await drain(server, closeUpgrades, drainMs);
        // Connections are gone, but their handlers may still be recording outcomes: those rows must make the flush.
        await settled();
        audit.recordControl(controlEvent('gateway.stopped', GATEWAY_ACTOR, { pid: process.pid }));
        // The last rows may meet a checkpoint holding the lock; blocking the writer's thread to wait for it no longer matters.
        await audit.close(SHUTDOWN_BUSY_TIMEOUT_MS);
        // Before the databases close: the shipper reads the file and writes PostgreSQL until then.
        await background.stopShipping();
        await closeResources();
      })();
      return closing;
    },
  };
}

/**
 * What must hold before anything is opened, so a refused start leaves nothing
 * running: a usable admin token, a valid policy (returned), a writable audit
 * file. SQLite would open an unwritable file read-only and the gateway would
 * then refuse every request with 503.
 */
function checkStart(config: GatewayConfig, env: NodeJS.ProcessEnv, writeAccess: WriteAccess | undefined): CompiledPolicy {
  const adminTokenError = adminTokenProblem(env[config.admin.tokenEnv], config.admin.tokenEnv);
  if (adminTokenError) throw new Error(adminTokenError);
  const policy = loadPolicyFile(config.policy.path, displayPath(config.policy.path));
  const storeProblem = storeWriteProblem(config.audit.path, displayPath, writeAccess);
  if (storeProblem) throw new Error(storeProblem);
  return policy;
}

/** The gateway's own connection (migrations, keys, retention, reads) and the thread that checkpoints the WAL. */
function openAuditStore(config: GatewayConfig, logger: Logger, reporter: ErrorReporter, onCheckpointerDied: () => void): { db: Db; storeFile: StoreFile; checkpointer: WalCheckpointer } {
  const db = openDatabase(config.audit.path, {
    synchronous: config.audit.synchronous,
    retentionDays: config.audit.retentionDays,
    checkpointsElsewhere: true,
    busyTimeoutMs: WRITER_BUSY_TIMEOUT_MS,
  });
  const storeFile = new StoreFile(config.audit.path);
  const checkpointer = new WalCheckpointer(config.audit.path, config.audit.walLimitBytes, {
    onError: throttleByCode(CHECKPOINT_LOG_INTERVAL_MS, (code, suppressed) => {
      logger.error({ code, suppressed_repeats: suppressed }, 'audit checkpoint failed');
      reporter.message('audit checkpoint failed', { stage: 'audit', code });
    }),
    onPinned(walBytes) {
      logger.warn({ wal_bytes: walBytes, wal_limit_bytes: config.audit.walLimitBytes }, 'audit WAL is over its limit: a long-running reader holds an old snapshot');
      reporter.message('audit WAL over its limit', { stage: 'audit' });
    },
    onDied() {
      // Without its checkpointer the WAL would grow for ever; checkpointing inline is slower but bounded.
      db.pragma('wal_autocheckpoint = 1000');
      onCheckpointerDied();
      logger.error('audit checkpoint thread died; the writer checkpoints inline from now on');
      reporter.message('audit checkpoint thread died', { stage: 'audit' });
    },
  });
  return { db, storeFile, checkpointer };
}

/**
 * `audit.writer_thread: auto`: on its own thread when this process may use a
 * second core, so SQLite's work runs beside the event loop. Confined to one
 * core, the thread would only add two context switches to every group commit,
 * so the writer stays on the event loop (docs/design/audit-writer.md, "The
 * writer's thread").
 */
function createAuditWriter(config: GatewayConfig, db: Db, storeFile: StoreFile, metrics: GatewayMetrics, logger: Logger, reporter: ErrorReporter): RunningAuditWriter {
  const hooks: AuditWriterHooks = {
    onCommit(ms, waitedMs) {
      metrics.auditCommitted(ms, waitedMs);
    },
    onFailure(err, lostOutcomes) {
      metrics.auditFailed();
      logger.error({ err: errorSummary(err), lost_outcomes: lostOutcomes }, 'audit write failed');
      reporter.exception(err, { stage: 'audit' });
    },
  };
  const setting = config.audit.writerThread;
  const threaded = setting === 'on' || (setting === 'auto' && availableParallelism() > 1);
  logger.info({ audit_writer: threaded ? 'thread' : 'event loop', cores: availableParallelism() }, 'audit writer started');
  return threaded ? new AuditWriterThread(storeFile, config.audit.synchronous, hooks) : new AuditWriter(db, storeFile, hooks);
}

/** The policy in force, swapped on valid edits; every text that comes into force goes to `policy_version` with a control event. */
function watchPolicy(config: GatewayConfig, initial: CompiledPolicy, audit: AuditLog, metrics: GatewayMetrics, logger: Logger, reporter: ErrorReporter): PolicyWatcher {
  const loaded = (p: CompiledPolicy) => audit.recordControl(
    controlEvent('policy.loaded', GATEWAY_ACTOR, { policy_hash: p.hash, path: config.policy.path, rules: p.rules.length, mode: p.mode }),
    policyVersionRow(p, config.policy.path),
  );
  loaded(initial);
  return new PolicyWatcher(config.policy.path, displayPath(config.policy.path), initial, {
    onReload(p) {
      loaded(p);
      metrics.policyReloaded('success');
      metrics.policyLoaded(p.hash);
      logger.info({ policy_hash: p.hash, rules: p.rules.length, mode: p.mode }, 'policy reloaded');
    },
    onRejected(error) {
      audit.recordControl(controlEvent('policy.rejected', GATEWAY_ACTOR, { path: config.policy.path, line: error.line, col: error.col, key: error.key, error: error.message }));
      metrics.policyReloaded('failure');
      logger.error({ file: error.file, line: error.line, col: error.col, key: error.key }, `policy edit rejected, keeping the last good policy: ${error.message}`);
      reporter.message('policy edit rejected', { file: error.file, line: String(error.line), col: String(error.col) });
    },
  });
}

/**
 * The dashboard exists only with an admin token (an empty variable counts as
 * unset). In fleet mode it shows every gateway: it reads the central tables,
 * on a pool of its own, not this file.
 */
function openDashboard(config: GatewayConfig, env: NodeJS.ProcessEnv, audit: AuditLog, policy: PolicyWatcher, logger: Logger): { admin: AdminRoutes; close(): Promise<void> } | null {
  const token = env[config.admin.tokenEnv];
  if (!token) return null;
  const onLogin = (address: string, accepted: boolean) => audit.recordControl(controlEvent(accepted ? 'admin.login' : 'admin.login_failed', address, { address }));
  const central = config.fleet ? openCentralDashboard(config.fleet, config.file, env) : null;
  const admin = new AdminRoutes({ token, auditPath: config.audit.path, policy, policyPath: config.policy.path, logger, onLogin, central: central ?? undefined });
  return {
    admin,
    async close() {
      await central?.close();
      admin.close();
    },
  };
}

interface Background {
  /** Retention, backups, policy file checks and key refreshes: before the drain, so nothing new starts during it. */
  stopSchedules(): Promise<void>;
  /** After the last rows are committed, so they get their chance to reach PostgreSQL. */
  stopShipping(): Promise<void>;
}

/** What runs beside the requests once the gateway listens; in fleet mode that includes shipping committed rows to PostgreSQL, which requests never wait for. */
function startBackground(
  config: GatewayConfig,
  parts: { db: Db; audit: AuditLog; checkpointer: WalCheckpointer; metrics: GatewayMetrics; keys: KeyRegistry; policy: PolicyWatcher; fleet: FleetGateway | null },
  logger: Logger, reporter: ErrorReporter,
): Background {
  const { db, audit, checkpointer, metrics, keys, policy, fleet } = parts;
  const shipping = fleet && config.fleet
    ? startFleetShipping({
      auditPath: config.audit.path, writerDb: db, database: fleet.database, gatewayId: config.fleet.gatewayId, databaseUrlEnv: config.fleet.databaseUrlEnv,
      cleanupSchedule: config.audit.cleanupSchedule, registry: metrics.registry, logger, reporter,
    })
    : null;
  keys.start((err) => {
    logger.error({ err: errorSummary(err) }, 'key refresh failed');
    reporter.exception(err, { stage: 'auth' });
  });
  policy.start();
  const schedules = [
    scheduleRetention(config, db, audit, checkpointer, metrics, logger, reporter, fleet !== null),
    scheduleBackups(config, audit, metrics, logger, reporter),
  ];
  return {
    async stopSchedules() {
      await Promise.all(schedules.map((job) => job.stop()));
      policy.stop();
      keys.stop();
    },
    async stopShipping() {
      await shipping?.stop();
    },
  };
}

/** Retention on audit.cleanup_schedule; in fleet mode a row is kept until it has reached PostgreSQL. */
function scheduleRetention(
  config: GatewayConfig, db: Db, audit: AuditLog, checkpointer: WalCheckpointer,
  metrics: GatewayMetrics, logger: Logger, reporter: ErrorReporter, fleet: boolean,
): { stop(): Promise<void> } {
  return scheduleCleanup(config.audit, db, audit, checkpointer, {
    onBatch(ms) {
      metrics.pruneBatch(ms);
    },
    onLongPause() {
      logger.warn({ wal_limit_bytes: config.audit.walLimitBytes }, 'audit retention paused for a minute: the WAL is near its limit, kept from being reset by a long-running reader');
    },
    onDone(result) {
      audit.recordControl(controlEvent('retention.ran', GATEWAY_ACTOR, { decisions: result.decisions, outcomes: result.outcomes, retention_days: config.audit.retentionDays, anchors: latestAnchors(db) }));
      logger.info({ deleted_decisions: result.decisions, deleted_outcomes: result.outcomes, retention_days: config.audit.retentionDays }, 'audit retention ran');
    },
    onError(err) {
      logger.error({ err: errorSummary(err) }, 'audit retention failed');
      reporter.exception(err, { stage: 'retention' });
    },
  }, { shippedThrough: fleet ? localShippedThrough(db) : undefined });
}

function scheduleBackups(config: GatewayConfig, audit: AuditLog, metrics: GatewayMetrics, logger: Logger, reporter: ErrorReporter): { stop(): Promise<void> } {
  return scheduleBackup(config.audit, {
    onDone(result) {
      audit.recordControl(controlEvent('backup.made', GATEWAY_ACTOR, { file: result.file, bytes: result.bytes, deleted: result.deleted }));
      logger.info({ file: displayPath(result.file), bytes: result.bytes, ms: result.ms, deleted: result.deleted.map(displayPath) }, 'audit backup written');
    },
    onError(err) {
      logger.error({ err: errorSummary(err), backup_dir: displayPath(config.audit.backupDir) }, 'audit backup failed');
      metrics.backupFailed();
      reporter.exception(err, { stage: 'backup' });
    },
  });
}

/** Nothing may outlive a start that failed (a port in use): the thread, the pools, the database. */
async function listen(server: Server, config: GatewayConfig, closeResources: () => Promise<void>): Promise<void> {
  try {
    server.listen(config.server.port, config.server.host);
    await once(server, 'listening');
  } catch (err) {
    await closeResources();
    throw err;
  }
}

/** Stops accepting, lets in-flight requests finish for up to `drainMs`, then cuts what is left. */
async function drain(server: Server, closeUpgrades: () => void, drainMs: number): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const deadline = setTimeout(() => {
    server.closeAllConnections();
    closeUpgrades();
  }, drainMs);
  await closed;
  clearTimeout(deadline);
}
