import type { GatewayConfig } from '../config/gateway-config.js';

/**
 * A command's configuration, or the way to load it. Commands load it only after
 * their own arguments parsed, so a usage mistake exits 2 even where no
 * configuration exists.
 */
export type ConfigSource = GatewayConfig | (() => GatewayConfig);

export function configOf(source: ConfigSource): GatewayConfig {
  return typeof source === 'function' ? source() : source;
}
