import type { GatewayConfig } from '../config/gateway-config.js';
import { describeFleetError, FleetDatabase, fleetDatabaseUrl } from '../fleet/fleet-database.js';
import { CliError } from './cli-error.js';

/**
 * Runs a CLI command's work against the fleet's PostgreSQL and closes it.
 * Failures name the variable that holds the URL, never its value: the URL
 * carries the password.
 */
export async function withFleetDatabase<T>(config: GatewayConfig, command: string, env: NodeJS.ProcessEnv, fn: (db: FleetDatabase) => Promise<T>): Promise<T> {
  const fleet = config.fleet;
  if (!fleet) throw new CliError(`${command} needs fleet mode: ${config.file} has no fleet.database_url_env`, 2);
  let url: string;
  try {
    url = fleetDatabaseUrl(fleet, config.file, env);
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  const db = new FleetDatabase(url, { applicationName: `govgate ${command}`, maxConnections: 1, connectTimeoutMs: 5000 });
  try {
    return await fn(db);
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`${command} failed: the fleet database ($${fleet.databaseUrlEnv}): ${describeFleetError(err)}`);
  } finally {
    await db.close().catch(() => {});
  }
}
