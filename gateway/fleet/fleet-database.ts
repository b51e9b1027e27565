import pg from 'pg';
import type { FleetConfig } from '../config/fleet-config.js';

export interface FleetDatabaseOptions {
  /** Shown in pg_stat_activity, so an operator can tell the gateways and the CLI apart. */
  readonly applicationName: string;
  readonly maxConnections?: number;
  /** How long a connection attempt may take: a partition must not hang a poll or a CLI command for minutes. */
  readonly connectTimeoutMs?: number;
  /** Errors of idle connections (PostgreSQL restarted, the network dropped); they are expected and must not crash the process. */
  readonly onIdleError?: (err: Error) => void;
}

/**
 * The fleet's PostgreSQL: a small pool for queries, and dedicated clients for
 * LISTEN. The URL is held here only; it carries the password, so it is never
 * logged and never part of an error message.
 */
export class FleetDatabase {
  private readonly pool: pg.Pool;
  private closed = false;

  constructor(
    private readonly url: string,
    private readonly options: FleetDatabaseOptions,
  ) {
    this.pool = new pg.Pool({
      connectionString: url,
      application_name: options.applicationName,
      max: options.maxConnections ?? 4,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
      // A statement that never answers (a half-open connection) must fail, not pin a pool slot for ever.
      query_timeout: 10_000,
      idleTimeoutMillis: 10_000,
      keepAlive: true,
      // Idle connections must not keep a CLI command or a failed start alive; a serving gateway has its server for that.
      allowExitOnIdle: true,
    });
    // Without a listener, an idle connection cut by a PostgreSQL restart would throw from the event emitter and end the gateway.
    this.pool.on('error', (err) => options.onIdleError?.(err));
  }

  query<R extends pg.QueryResultRow>(text: string, values?: readonly unknown[]): Promise<pg.QueryResult<R>> {
    return this.pool.query<R>(text, values as unknown[] | undefined);
  }

  /** Runs `fn` in one transaction on one connection; rolled back when it throws. */
  async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    // pg emits 'error' on a checked-out client whose connection is cut (PostgreSQL stopped: 57P01) besides rejecting the
    // active query; the pool listens only while a client is idle, so without this the event would end the process.
    // The rejection is what the caller handles.
    const ignoreCut = () => {};
    client.on('error', ignoreCut);
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      throw err;
    } finally {
      // A connection whose rollback failed is in an unknown state: it is discarded, not reused.
      client.off('error', ignoreCut);
      client.release(broken);
    }
  }

  /** A connection outside the pool, for LISTEN: it must stay open and must not be handed to queries. The caller handles its 'error' event. */
  newClient(): pg.Client {
    return new pg.Client({
      connectionString: this.url,
      application_name: this.options.applicationName,
      connectionTimeoutMillis: this.options.connectTimeoutMs ?? 3000,
      keepAlive: true,
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }
}

/** The PostgreSQL URL from the variable `fleet.database_url_env` names; fails naming the variable, never showing the value. */
export function fleetDatabaseUrl(fleet: FleetConfig, configFile: string, env: NodeJS.ProcessEnv): string {
  const url = env[fleet.databaseUrlEnv];
  if (url === undefined || url.trim() === '') {
    throw new Error(`${configFile}: fleet.database_url_env: $${fleet.databaseUrlEnv} is unset or empty; set it to the fleet's PostgreSQL URL (postgres://…), or remove fleet.database_url_env for single-node mode`);
  }
  if (!/^postgres(ql)?:\/\//.test(url)) {
    throw new Error(`${configFile}: fleet.database_url_env: $${fleet.databaseUrlEnv} must be a postgres:// or postgresql:// URL`);
  }
  return url;
}

const NETWORK_ERRORS: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found',
  EAI_AGAIN: 'host name lookup failed',
};

/**
 * One line on why PostgreSQL failed, safe to print: a network error by its
 * code, a server error by its message and SQLSTATE (the server never echoes a
 * password), and pg's own errors (timeouts, a closed connection) by message.
 */
export function describeFleetError(err: unknown): string {
  if (!(err instanceof Error)) return 'unknown error';
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && Object.hasOwn(NETWORK_ERRORS, code)) return `${NETWORK_ERRORS[code]} (${code})`;
  if (err instanceof pg.DatabaseError) return `${err.message} (SQLSTATE ${err.code ?? 'unknown'})`;
  const first = err.message.split('\n')[0] ?? '';
  // An error of the URL parser may quote the URL, and with it the password.
  return /:\/\//.test(first) ? err.name : first || err.name;
}
