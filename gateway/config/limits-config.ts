import type { YamlSource } from './yaml-source.js';
import { readEnum, readInteger, readOptionalMap, readString } from './validate.js';

export type LimitStoreKind = 'memory' | 'redis';
export type OnStoreFailure = 'block' | 'allow';

/** Where limit counters live and what happens when that place cannot be reached. */
export interface LimitsConfig {
  readonly store: LimitStoreKind;
  /** Without credentials: a password comes from the environment variable `redisPasswordEnv`. */
  readonly redisUrl: string | null;
  readonly redisPasswordEnv: string | null;
  readonly onStoreFailure: OnStoreFailure;
  /** Completion tokens reserved for a request that states no max_tokens. */
  readonly defaultTokenReservation: number;
}

export const LIMITS_KEYS = ['store', 'redis_url', 'redis_password_env', 'on_store_failure', 'default_token_reservation'] as const;

/** `limits:` in gateway.yaml; every key is optional and the default is counters in this process. */
export function readLimitsConfig(src: YamlSource, raw: unknown): LimitsConfig {
  const limits = readOptionalMap(src, ['limits'], raw, LIMITS_KEYS);
  const store = readEnum(src, ['limits', 'store'], limits.store, ['memory', 'redis'] as const, 'memory');
  let redisUrl: string | null = null;
  if (store === 'redis') {
    redisUrl = readString(src, ['limits', 'redis_url'], limits.redis_url);
    let url: URL;
    try {
      url = new URL(redisUrl);
    } catch {
      src.fail(['limits', 'redis_url'], `"${redisUrl}" is not a URL`);
    }
    if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') src.fail(['limits', 'redis_url'], 'must be a redis:// or rediss:// URL');
    if (url.password) src.fail(['limits', 'redis_url'], 'must not hold a password; name the environment variable that does in limits.redis_password_env');
  } else if (limits.redis_url !== undefined) {
    src.fail(['limits', 'redis_url'], 'is only used with limits.store: redis');
  }
  const passwordEnv = limits.redis_password_env === undefined ? null : readString(src, ['limits', 'redis_password_env'], limits.redis_password_env);
  if (passwordEnv !== null && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(passwordEnv)) src.fail(['limits', 'redis_password_env'], 'must name an environment variable');
  return {
    store,
    redisUrl,
    redisPasswordEnv: passwordEnv,
    onStoreFailure: readEnum(src, ['limits', 'on_store_failure'], limits.on_store_failure, ['block', 'allow'] as const, 'block'),
    defaultTokenReservation: readInteger(src, ['limits', 'default_token_reservation'], limits.default_token_reservation, { min: 0, max: 10_000_000 }, 1024),
  };
}
