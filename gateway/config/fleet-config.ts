import { hostname } from 'node:os';
import type { YamlSource } from './yaml-source.js';
import { ENV_NAME, keyPathOf, sectionKeys } from './settings.js';
import { readOptionalStringSetting, readSection } from './read-setting.js';

/** Fleet mode: keys (and later the audit trail) shared through PostgreSQL. */
export interface FleetConfig {
  /** The environment variable holding the PostgreSQL URL: the URL carries a password, so it never goes in YAML. */
  readonly databaseUrlEnv: string;
  /** Names this gateway in the central tables, logs and the dashboard: the narrow pattern keeps it printable and unambiguous. */
  readonly gatewayId: string;
}

export const FLEET_KEYS: readonly string[] = sectionKeys('fleet');

export const GATEWAY_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * `fleet:` in gateway.yaml; null (single-node mode) unless `database_url_env`
 * is set. Whether the variable itself is set is checked by the commands that
 * connect (`serve`, `keys`), so `policy check` or `backup` run without it.
 */
export function readFleetConfig(src: YamlSource, raw: unknown, host: () => string = hostname): FleetConfig | null {
  const fleet = readSection(src, 'fleet', raw);
  const databaseUrlEnv = readOptionalStringSetting(src, fleet, 'fleet.database_url_env');
  if (databaseUrlEnv === null) {
    // A gateway id without a database would suggest a fleet that is not there.
    if (fleet.gateway_id !== undefined) src.fail(keyPathOf('fleet.gateway_id'), 'is only used with fleet.database_url_env');
    return null;
  }
  if (!ENV_NAME.test(databaseUrlEnv)) {
    src.fail(keyPathOf('fleet.database_url_env'), 'must name an environment variable (the URL itself never goes in YAML: it carries the password)');
  }
  // The table's default for fleet.gateway_id is derived: the host name.
  let gatewayId = readOptionalStringSetting(src, fleet, 'fleet.gateway_id');
  if (gatewayId === null) {
    gatewayId = host();
    if (!GATEWAY_ID.test(gatewayId)) {
      src.fail(['fleet'], `the host name "${gatewayId}" is not a usable gateway id (${GATEWAY_ID.source}); set fleet.gateway_id`);
    }
  } else if (!GATEWAY_ID.test(gatewayId)) {
    src.fail(keyPathOf('fleet.gateway_id'), `must be 1 to 64 letters, digits, ".", "_" or "-", starting with a letter or digit, got "${gatewayId}"`);
  }
  return { databaseUrlEnv, gatewayId };
}
