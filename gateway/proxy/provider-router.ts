import { Pool } from 'undici';
import type { ProviderConfig } from '../config/gateway-config.js';
import { compileGlobList, type StringTest } from '../policy/glob.js';

/** One upstream: its keep-alive pool, where its API lives, and the credential the gateway sends it. */
export interface Provider {
  readonly name: string;
  readonly origin: string;
  /** The base URL's path without a trailing slash, e.g. `/v1`. */
  readonly basePath: string;
  readonly pool: Pool;
  /** `Bearer <secret>` from `api_key_env`, or null for keyless providers. */
  readonly authorization: string | null;
  readonly serves: StringTest;
  readonly config: ProviderConfig;
}

/**
 * Picks the provider for a model: the first whose `models` patterns match.
 * Only `providers[].base_url` from the configuration decides where the gateway
 * connects; nothing in a request can.
 */
export class ProviderRouter {
  readonly providers: readonly Provider[];
  private readonly inFlight = new Map<string, number>();

  constructor(configs: readonly ProviderConfig[], env: NodeJS.ProcessEnv) {
    this.providers = configs.map((config) => {
      const secret = config.apiKeyEnv ? env[config.apiKeyEnv] : undefined;
      return Object.freeze({
        name: config.name,
        origin: config.baseUrl.origin,
        basePath: config.baseUrl.pathname.replace(/\/+$/, ''),
        pool: new Pool(config.baseUrl.origin, {
          connections: config.maxConnections,
          connectTimeout: config.connectTimeoutMs,
          headersTimeout: config.firstByteTimeoutMs,
          bodyTimeout: config.idleTimeoutMs,
        }),
        authorization: secret ? `Bearer ${secret}` : null,
        serves: compileGlobList(config.models),
        config,
      });
    });
  }

  /** Providers whose `api_key_env` names an unset variable: worth a warning at start-up. */
  missingCredentials(): string[] {
    return this.providers.filter((p) => p.config.apiKeyEnv !== null && p.authorization === null).map((p) => `${p.name} ($${p.config.apiKeyEnv})`);
  }

  /** Model-less routes (`GET /v1/models`, files) go to the first provider. */
  forModel(model: string | null): Provider | undefined {
    if (model === null) return this.providers[0];
    return this.providers.find((p) => p.serves(model));
  }

  /** Takes one of the provider's `max_in_flight` places; false when all are taken. */
  tryAcquire(provider: Provider): boolean {
    const now = this.inFlight.get(provider.name) ?? 0;
    if (now >= provider.config.maxInFlight) return false;
    this.inFlight.set(provider.name, now + 1);
    return true;
  }

  release(provider: Provider): void {
    this.inFlight.set(provider.name, (this.inFlight.get(provider.name) ?? 1) - 1);
  }

  async close(): Promise<void> {
    await Promise.all(this.providers.map((p) => p.pool.close()));
  }
}
