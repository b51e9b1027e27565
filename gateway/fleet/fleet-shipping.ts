import { hostname } from 'node:os';
import type { Registry } from 'prom-client';
import type { Db } from '../store/connection.js';
import { errorSummary } from '../observability/error-summary.js';
import type { ErrorReporter } from '../observability/error-reporter.js';
import type { Logger } from '../observability/logger.js';
import { scheduleCentralRetention } from './central-retention.js';
import { describeFleetError, type FleetDatabase } from './fleet-database.js';
import { LocalWatermark } from './local-watermark.js';
import { registerShipMetrics } from './ship-metrics.js';
import { AuditShipper } from './shipper.js';

/** An identity conflict is logged this often while it lasts: loud, but not a line per pass. */
const CONFLICT_LOG_INTERVAL_MS = 60_000;

export interface FleetShippingOptions {
  readonly auditPath: string;
  /** The audit writer's connection: only the local watermark is written on it (local-watermark.ts). */
  readonly writerDb: Db;
  readonly database: FleetDatabase;
  readonly gatewayId: string;
  readonly databaseUrlEnv: string;
  readonly cleanupSchedule: string;
  readonly registry: Registry;
  readonly logger: Logger;
  readonly reporter: ErrorReporter;
}

/** How long a stop gives its last rows to reach the fleet database; the rest ships at the next start. */
const STOP_FLUSH_MS = 2000;

export interface FleetShipping {
  /** Stops the schedule and the shipper, giving the last rows up to `flushMs` to reach PostgreSQL. */
  stop(flushMs?: number): Promise<void>;
}

/** The fleet's audit trail, seen from one gateway: shipping its rows, and central retention when its turn comes. */
export function startFleetShipping(options: FleetShippingOptions): FleetShipping {
  const { logger, reporter, gatewayId, databaseUrlEnv: env } = options;
  let conflictLoggedAt: number | null = null;
  let metrics: ReturnType<typeof registerShipMetrics> | null = null;
  const shipper = new AuditShipper({
    auditPath: options.auditPath,
    database: options.database,
    gatewayId,
    instance: `${hostname()}:${process.pid}`,
    local: new LocalWatermark(options.writerDb),
    hooks: {
      onLost(err) {
        logger.error({ err: errorSummary(err), problem: describeFleetError(err), env, gateway_id: gatewayId }, 'audit shipping paused: rows wait in the local audit file until the fleet database takes them');
      },
      onBack() {
        logger.info({ env, gateway_id: gatewayId }, 'audit shipping resumed');
      },
      onConflict(problem) {
        const now = Date.now();
        if (conflictLoggedAt !== null && now - conflictLoggedAt < CONFLICT_LOG_INTERVAL_MS) return;
        if (conflictLoggedAt === null) reporter.message('fleet gateway id conflict: audit shipping refused', { stage: 'fleet', gateway_id: gatewayId });
        conflictLoggedAt = now;
        logger.error({ gateway_id: gatewayId }, `audit shipping refused, serving and recording locally: ${problem.message}`);
      },
      onShipped(table, rows) {
        metrics?.shipped(table, rows);
      },
    },
  });
  metrics = registerShipMetrics(options.registry, shipper);
  shipper.start();
  const retention = scheduleCentralRetention(options.cleanupSchedule, options.database, {
    onDone(result) {
      if (result.ran) logger.info({ deleted_decisions: result.decisions, deleted_outcomes: result.outcomes }, 'central audit retention ran');
    },
    onError(err) {
      logger.error({ err: errorSummary(err), problem: describeFleetError(err) }, 'central audit retention failed');
      reporter.exception(err, { stage: 'retention' });
    },
  });
  return {
    async stop(flushMs = STOP_FLUSH_MS) {
      await Promise.all([retention.stop(), shipper.stop(flushMs)]);
    },
  };
}
