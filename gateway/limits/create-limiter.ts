import type { Db } from '../store/connection.js';
import type { LimitsConfig } from '../config/limits-config.js';
import type { Logger } from '../observability/logger.js';
import type { ErrorReporter } from '../observability/error-reporter.js';
import { errorSummary } from '../observability/error-summary.js';
import { Limiter } from './limiter.js';
import { MemoryStore } from './memory-store.js';
import { restoreCounters } from './restore-counters.js';

/** How long start-up waits for Redis before serving with `on_store_failure` in charge. */
const REDIS_START_WAIT_MS = 3000;

/**
 * The limiter over the configured store. In memory, counters are restored
 * from the audit log; in Redis they are already shared and kept, so the local
 * audit log (one gateway's share) must not be added to them.
 */
export async function createLimiter(config: LimitsConfig, db: Db, env: NodeJS.ProcessEnv, logger: Logger, reporter: ErrorReporter): Promise<Limiter> {
  const onSettleFailure = (err: unknown) => {
    logger.warn({ err: errorSummary(err) }, 'a token reservation could not be settled; the counter keeps the reservation');
  };
  if (config.store === 'memory') {
    const store = new MemoryStore();
    const restored = restoreCounters(db, store);
    logger.info({ requests: restored.requests, tokens: restored.tokens }, 'limit counters restored from the audit log');
    return new Limiter(store, config.defaultTokenReservation, onSettleFailure);
  }
  // Loaded only when used: the Redis client costs start-up time a gateway counting in memory need not pay.
  const { RedisStore } = await import('./redis-store.js');
  const password = config.redisPasswordEnv === null ? undefined : env[config.redisPasswordEnv] || undefined;
  const store = new RedisStore(config.redisUrl!, password, {
    onConnectionChange(up, err) {
      if (up) {
        logger.info('limit store (redis) connected');
        return;
      }
      logger.error({ err: err ? errorSummary(err) : undefined, on_store_failure: config.onStoreFailure }, 'limit store (redis) unreachable');
      reporter.message('limit store unreachable', { stage: 'limits', on_store_failure: config.onStoreFailure });
    },
  });
  if (!(await store.ready(REDIS_START_WAIT_MS))) {
    logger.error({ on_store_failure: config.onStoreFailure }, 'limit store (redis) unreachable at start; limited requests follow limits.on_store_failure until it is back');
  }
  return new Limiter(store, config.defaultTokenReservation, onSettleFailure);
}
