import { loadGatewayConfig, resolveConfigFile, type GatewayConfig } from '../config/gateway-config.js';
import { ConfigError } from '../config/yaml-source.js';
import { CliError } from './cli-error.js';

const USAGE = `usage: govgate <command> [--config FILE]

  serve                                   run the gateway in the foreground
  keys create --customer ID [--name LABEL] [--json]
  keys list [--customer ID] [--json]
  keys revoke KEY_ID
  policy check [FILE]
  policy test --customer ID --model M --operation OP [--meta k=v]... [--json]
  cleanup-logs [DAYS]
  audit verify [--export-head] [--against FILE]
  backup                                  write a verified snapshot of the audit database
  usage [--customer ID] [--since 30d] [--json]

--config defaults to $GOVGATE_CONFIG, then config/gateway.yaml`;

/**
 * Runs one command; returns the exit code. Errors become one line on stderr.
 * Each command's module is loaded on demand, so `keys list` does not pay for
 * the proxy, the dashboard or Sentry.
 */
export async function main(argv: string[]): Promise<number> {
  try {
    const { configFile, rest } = extractConfigFlag(argv);
    const loadConfig = (): GatewayConfig => loadGatewayConfig(resolveConfigFile(configFile));
    const [command, ...args] = rest;
    switch (command) {
      case 'serve':
        await (await import('./serve-command.js')).serveCommand(loadConfig(), args, process.stderr);
        return 0;
      case 'keys':
        (await import('./keys-command.js')).keysCommand(loadConfig(), args, process.stdout);
        return 0;
      case 'policy':
        await (await import('./policy-command.js')).policyCommand(loadConfig, args, process.stdout);
        return 0;
      case 'cleanup-logs':
        await (await import('./cleanup-command.js')).cleanupCommand(loadConfig(), args, process.stdout);
        return 0;
      case 'audit':
        return (await import('./audit-command.js')).auditCommand(loadConfig(), args, process.stdout);
      case 'backup':
        await (await import('./backup-command.js')).backupCommand(loadConfig(), args, process.stdout);
        return 0;
      case 'usage':
        (await import('./usage-command.js')).usageCommand(loadConfig(), args, process.stdout);
        return 0;
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(`${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        throw new CliError(`unknown command "${command}"; run "govgate help" for the list`, 2);
    }
  } catch (err) {
    // Located errors keep the bare `FILE:LINE:COL: message` shape that editors and CI annotators read.
    process.stderr.write(err instanceof ConfigError ? `${err.message}\n` : `govgate: ${oneLine(err)}\n`);
    return err instanceof CliError ? err.exitCode : 1;
  }
}

/** `--config` may stand anywhere, so it is taken out before each command parses its own flags. */
function extractConfigFlag(argv: string[]): { configFile: string | undefined; rest: string[] } {
  const rest: string[] = [];
  let configFile: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--config') {
      configFile = argv[++i];
      if (configFile === undefined) throw new CliError('--config needs a FILE', 2);
    } else if (arg.startsWith('--config=')) {
      configFile = arg.slice('--config='.length);
    } else {
      rest.push(arg);
    }
  }
  return { configFile, rest };
}

function oneLine(err: unknown): string {
  if (err instanceof CliError) return err.message;
  const code = (err as { code?: string }).code;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' || code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' || code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    return (err as Error).message.split('\n')[0]!;
  }
  if (code?.startsWith('SQLITE_')) return `audit database error (${code}): ${(err as Error).message}`;
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}


process.exitCode = await main(process.argv.slice(2));
