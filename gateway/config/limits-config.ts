import type { YamlSource } from './yaml-source.js';
import { readString } from './validate.js';
import { ENV_NAME, keyPathOf, sectionKeys, type EnumValue } from './settings.js';
import { parseUrlSetting, readEnumSetting, readIntegerSetting, readOptionalStringSetting, readSection } from './read-setting.js';

export type LimitStoreKind = EnumValue<'limits.store'>;
export type OnStoreFailure = EnumValue<'limits.on_store_failure'>;

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

export const LIMITS_KEYS: readonly string[] = sectionKeys('limits');

/** `limits:` in gateway.yaml; every key is optional and the default is counters in this process. */
export function readLimitsConfig(src: YamlSource, raw: unknown): LimitsConfig {
  const limits = readSection(src, 'limits', raw);
  const store = readEnumSetting(src, limits, 'limits.store');
  const urlAt = keyPathOf('limits.redis_url');
  let redisUrl: string | null = null;
  if (store === 'redis') {
    // No default in the table: with a Redis store the URL is required.
    redisUrl = readString(src, urlAt, limits.redis_url);
    const url = parseUrlSetting(src, 'limits.redis_url', redisUrl, 'a redis:// or rediss:// URL');
    if (url.password) src.fail(urlAt, 'must not hold a password; name the environment variable that does in limits.redis_password_env');
  } else if (limits.redis_url !== undefined) {
    src.fail(urlAt, 'is only used with limits.store: redis');
  }
  const passwordEnv = readOptionalStringSetting(src, limits, 'limits.redis_password_env');
  if (passwordEnv !== null && !ENV_NAME.test(passwordEnv)) src.fail(keyPathOf('limits.redis_password_env'), 'must name an environment variable');
  return {
    store,
    redisUrl,
    redisPasswordEnv: passwordEnv,
    onStoreFailure: readEnumSetting(src, limits, 'limits.on_store_failure'),
    defaultTokenReservation: readIntegerSetting(src, limits, 'limits.default_token_reservation'),
  };
}
