import type { FleetConfig } from '../config/fleet-config.js';
import { migrateCentralSchema } from './central-schema.js';
import { describeFleetError, FleetDatabase, fleetDatabaseUrl } from './fleet-database.js';
import { KeySync } from './key-sync.js';
import { errorSummary } from '../observability/error-summary.js';
import type { ErrorReporter } from '../observability/error-reporter.js';
import type { Logger } from '../observability/logger.js';

/** What a gateway in fleet mode holds open: the database and the key feed for its registry. */
export interface FleetGateway {
  readonly database: FleetDatabase;
  readonly keys: KeySync;
  close(): Promise<void>;
}

/**
 * Connects a gateway to its fleet before it serves: the variable must be set,
 * the central schema current and the keys loaded, or the start fails with one
 * line naming the variable (never its value, which carries the password).
 */
export async function openFleetGateway(
  fleet: FleetConfig,
  configFile: string,
  env: NodeJS.ProcessEnv,
  observe: { readonly logger: Logger; readonly reporter: ErrorReporter },
): Promise<FleetGateway> {
  const { logger, reporter } = observe;
  const url = fleetDatabaseUrl(fleet, configFile, env);
  const database = new FleetDatabase(url, {
    applicationName: `govgate ${fleet.gatewayId}`,
    // The key sync's poll notices an outage and says so once; an idle connection cut by it says nothing new.
    onIdleError: () => {},
  });
  try {
    await migrateCentralSchema(database);
    const keys = await KeySync.open(database, {
      onLost(err, keysHeld) {
        logger.error({ err: errorSummary(err), keys_held: keysHeld, env: fleet.databaseUrlEnv }, 'fleet database unreachable: serving the keys held until it is back; keys revoked meanwhile stay accepted here');
        reporter.message('fleet database unreachable', { stage: 'auth' });
      },
      onBack() {
        logger.info({ env: fleet.databaseUrlEnv }, 'fleet database reachable again: keys reloaded');
      },
    });
    return {
      database,
      keys,
      async close() {
        keys.stop();
        await database.close();
      },
    };
  } catch (err) {
    await database.close().catch(() => {});
    throw new Error(`cannot start in fleet mode: the fleet database ($${fleet.databaseUrlEnv}) failed: ${describeFleetError(err)}`, { cause: err });
  }
}
