import { parseArgs } from 'node:util';
import { startGateway } from '../app.js';
import { displayPath } from '../config/gateway-config.js';
import { NO_REPORTER } from '../observability/no-reporter.js';
import { createLogger } from '../observability/logger.js';
import { errorSummary } from '../observability/error-summary.js';
import { CliError } from './cli-error.js';
import { configOf, type ConfigSource } from './config-source.js';
import { VERSION } from '../config/version.js';

/** Runs the gateway in the foreground until SIGTERM or SIGINT, then drains and exits 0. */
export async function serveCommand(source: ConfigSource, args: string[], err: NodeJS.WritableStream): Promise<void> {
  parseArgs({ args, options: {}, strict: true });
  const config = configOf(source);
  const logger = createLogger(config.log.level);
  const dsn = process.env[config.sentry.dsnEnv];
  const reporter = dsn ? (await import('../observability/error-reporter.js')).createErrorReporter(dsn, `govgate@${VERSION}`) : NO_REPORTER;

  const die = (error: unknown) => {
    logger.fatal({ err: errorSummary(error) }, 'govgate crashed');
    logger.flush();
    void reporter.flush(2000).finally(() => process.exit(1));
  };
  process.on('uncaughtException', die);
  process.on('unhandledRejection', die);

  let gateway;
  try {
    gateway = await startGateway(config, { logger, reporter });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new CliError(`${config.file}: server.port: ${config.server.host}:${config.server.port} is already in use`);
    }
    throw error;
  }

  logger.info({ url: gateway.url, policy: displayPath(config.policy.path), audit: displayPath(config.audit.path), sentry: reporter.enabled }, 'govgate listening');
  err.write(`govgate ${VERSION} listening on ${gateway.url} (policy ${displayPath(config.policy.path)}, audit ${displayPath(config.audit.path)})\n`);
  // startGateway has logged these at warn; a person starting the gateway reads the terminal, not the JSON log.
  for (const problem of gateway.context.providers.problems) err.write(`warning: ${problem.message}\n`);
  if (gateway.context.keys.size === 0) {
    const configFlag = config.file === 'config/gateway.yaml' ? '' : ` --config ${config.file}`;
    err.write(`No API keys yet. Create one with:\n  npx govgate keys create --customer my-team --name first-key${configFlag}\n`);
  }

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'draining');
      void gateway.close().then(resolve, (error: unknown) => {
        logger.error({ err: errorSummary(error) }, 'shutdown failed');
        resolve();
      });
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  logger.info('stopped');
  logger.flush();
  await reporter.flush(2000);
}
