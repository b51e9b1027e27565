import type { AuditLog } from '../audit/audit-writer.js';
import type { BatchInputFiles } from '../audit/batch-files.js';
import type { KeyRegistry } from '../auth/key-registry.js';
import type { Limiter } from '../limits/limiter.js';
import type { GatewayConfig } from '../config/gateway-config.js';
import type { ErrorReporter } from '../observability/error-reporter.js';
import type { Logger } from '../observability/logger.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import type { PolicyWatcher } from '../policy/policy-watcher.js';
import type { ProviderRouter } from '../proxy/provider-router.js';

/** The services one request passes through, created once by the app and shared read-only. */
export interface GatewayContext {
  readonly config: GatewayConfig;
  readonly keys: KeyRegistry;
  readonly policy: PolicyWatcher;
  readonly audit: AuditLog;
  readonly batchFiles: BatchInputFiles;
  readonly providers: ProviderRouter;
  readonly limiter: Limiter;
  readonly logger: Logger;
  readonly reporter: ErrorReporter;
  readonly metrics: GatewayMetrics;
  /** Whether the audit database takes writes now (for /readyz). */
  readonly auditWritable: () => boolean;
}
