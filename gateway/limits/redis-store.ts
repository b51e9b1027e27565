import { Redis } from 'ioredis';
import { StoreUnavailableError, type CounterAdjustment, type CounterCheck, type CounterStore, type ReserveResult } from './counter-store.js';

/**
 * Checks every counter, and raises all of them only if all fit: one Lua script,
 * so Redis runs it atomically and gateways sharing the store cannot both take
 * the last unit. KEYS: per check its bucket and its previous bucket. ARGV: per
 * check limit, cost, previous-bucket weight and lifetime in ms.
 */
const RESERVE = `
local n = #KEYS / 2
local counts = {}
local ok = 1
for i = 1, n do
  local limit = tonumber(ARGV[4 * i - 3])
  local cost = tonumber(ARGV[4 * i - 2])
  local weight = tonumber(ARGV[4 * i - 1])
  local current = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  local previous = 0
  if weight > 0 then previous = tonumber(redis.call('GET', KEYS[2 * i]) or '0') end
  counts[2 * i - 1] = current
  counts[2 * i] = previous
  if current + previous * weight + cost > limit then ok = 0 end
end
if ok == 1 then
  for i = 1, n do
    local cost = tonumber(ARGV[4 * i - 2])
    if cost > 0 then
      redis.call('INCRBY', KEYS[2 * i - 1], cost)
      redis.call('PEXPIRE', KEYS[2 * i - 1], ARGV[4 * i])
    end
  end
end
table.insert(counts, 1, ok)
return counts
`;

/** Settles reservations on buckets that still exist; an expired bucket is not brought back without its lifetime. */
const ADJUST = `
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local v = redis.call('INCRBY', KEYS[i], ARGV[i])
    if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 0
`;

/** Commands fail after this long rather than holding requests while Redis is unwell. */
const COMMAND_TIMEOUT_MS = 1000;
const KEY_PREFIX = 'govgate:limit:';

type LimitCommands = Redis & {
  govgateReserve(numKeys: number, ...args: (string | number)[]): Promise<number[]>;
  govgateAdjust(numKeys: number, ...args: (string | number)[]): Promise<number>;
};

export interface RedisStoreEvents {
  /** Called when the connection goes down or comes back, once per change. */
  onConnectionChange(up: boolean, err?: Error): void;
}

/**
 * Counters in Redis, shared by every gateway that points at it. The offline
 * queue is off: while Redis is unreachable a command fails at once, and
 * `limits.on_store_failure` decides, instead of requests piling up.
 */
export class RedisStore implements CounterStore {
  private readonly redis: LimitCommands;
  private up = false;

  constructor(url: string, password: string | undefined, private readonly events: RedisStoreEvents) {
    this.redis = new Redis(url, {
      password,
      keyPrefix: KEY_PREFIX,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: COMMAND_TIMEOUT_MS,
      retryStrategy: (times) => Math.min(times * 100, 2000),
    }) as LimitCommands;
    this.redis.defineCommand('govgateReserve', { lua: RESERVE });
    this.redis.defineCommand('govgateAdjust', { lua: ADJUST });
    this.redis.on('ready', () => this.changed(true));
    this.redis.on('error', (err: Error) => this.changed(false, err));
    this.redis.on('end', () => this.changed(false));
  }

  /** Waits up to `ms` for the first connection, so a gateway starting beside a healthy Redis does not refuse its first requests. */
  async ready(ms: number): Promise<boolean> {
    if (this.redis.status === 'ready') return true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.redis.off('ready', onReady);
        resolve(false);
      }, ms);
      timer.unref();
      const onReady = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.redis.once('ready', onReady);
    });
  }

  async reserve(checks: readonly CounterCheck[]): Promise<ReserveResult> {
    const keys = checks.flatMap((c) => [c.key, c.prevKey ?? c.key]);
    const args = checks.flatMap((c) => [c.limit, c.cost, c.prevKey === null ? 0 : c.prevWeight, Math.max(1, Math.ceil(c.keepMs))]);
    let reply: number[];
    try {
      reply = await this.redis.govgateReserve(keys.length, ...keys, ...args);
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
    const counts = checks.map((_, i) => ({ current: reply[1 + 2 * i]!, previous: reply[2 + 2 * i]! }));
    return { ok: reply[0] === 1, counts };
  }

  async adjust(adjustments: readonly CounterAdjustment[]): Promise<void> {
    if (adjustments.length === 0) return;
    try {
      await this.redis.govgateAdjust(adjustments.length, ...adjustments.map((a) => a.key), ...adjustments.map((a) => a.delta));
    } catch (err) {
      throw new StoreUnavailableError(err);
    }
  }

  async close(): Promise<void> {
    this.redis.removeAllListeners('end');
    this.redis.disconnect();
  }

  private changed(up: boolean, err?: Error): void {
    if (up === this.up) return;
    this.up = up;
    this.events.onConnectionChange(up, err);
  }
}
