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

/** Gateway keys start with this; a provider never issues one. */
const GATEWAY_KEY_PREFIX = 'gg_';

/** Why a provider's credential cannot work, and how to fix it; never holds the secret. */
export interface CredentialProblem {
  readonly provider: string;
  readonly env: string;
  readonly kind: 'missing' | 'gateway_key';
  readonly message: string;
}

/**
 * The two ways a start goes wrong in practice: the variable is not exported in
 * the gateway's shell, or the client's gateway key is exported under the same
 * name (both are called OPENAI_API_KEY) and is taken for the provider's key.
 */
export function credentialProblem(config: ProviderConfig, env: NodeJS.ProcessEnv): CredentialProblem | null {
  const name = config.apiKeyEnv;
  if (name === null) return null;
  const value = env[name];
  if (value === undefined || value === '') {
    return { provider: config.name, env: name, kind: 'missing', message: `requests to provider ${config.name} will be sent without a key and the provider will answer 401; set ${name} in the gateway's environment` };
  }
  if (value.startsWith(GATEWAY_KEY_PREFIX)) {
    return {
      provider: config.name,
      env: name,
      kind: 'gateway_key',
      message: `${name} holds a gateway key (${GATEWAY_KEY_PREFIX}…), not the provider's key: the provider will refuse it; the gateway key goes in the client's environment, set ${name} to provider ${config.name}'s key in the gateway's`,
    };
  }
  return null;
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
      // A gateway key is a secret of this gateway: sending it to a third party would leak it, and the provider refuses it anyway.
      const usable = secret && !secret.startsWith(GATEWAY_KEY_PREFIX) ? secret : undefined;
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
        authorization: usable ? `Bearer ${usable}` : null,
        serves: compileGlobList(config.models),
        config,
      });
    });
    this.problems = configs.flatMap((config) => {
      const problem = credentialProblem(config, env);
      return problem ? [problem] : [];
    });
  }

  /** Credentials that will make the provider answer 401, each with what to do about it: warned about at start-up. */
  readonly problems: readonly CredentialProblem[];

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
