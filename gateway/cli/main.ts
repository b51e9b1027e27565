import { displayPath, loadGatewayConfig, resolveConfigFile, type GatewayConfig } from '../config/gateway-config.js';
import { ConfigError } from '../config/yaml-source.js';
import { CliError } from './cli-error.js';
import { commandUsage, USAGE } from './usage-text.js';
import { VERSION } from '../config/version.js';

/** parseArgs' complaints about the command line itself: usage errors, exit 2. */
const PARSE_ARGS_CODES = new Set(['ERR_PARSE_ARGS_UNKNOWN_OPTION', 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL', 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE']);

type LoadConfig = () => GatewayConfig;
/** A command's exit code, or nothing for 0. */
type Command = (loadConfig: LoadConfig, args: string[]) => Promise<number | void>;

/**
 * The commands that read the configuration, each loaded on demand, so `keys
 * list` does not pay for the proxy, the dashboard or Sentry. `serve` logs to
 * stderr; the others answer on stdout.
 */
const COMMANDS: Readonly<Record<string, Command>> = {
  serve: async (load, args) => (await import('./serve-command.js')).serveCommand(load, args, process.stderr),
  keys: async (load, args) => (await import('./keys-command.js')).keysCommand(load, args, process.stdout),
  policy: async (load, args) => (await import('./policy-command.js')).policyCommand(load, args, process.stdout),
  'cleanup-logs': async (load, args) => (await import('./cleanup-command.js')).cleanupCommand(load, args, process.stdout),
  audit: async (load, args) => (await import('./audit-command.js')).auditCommand(load, args, process.stdout),
  backup: async (load, args) => (await import('./backup-command.js')).backupCommand(load, args, process.stdout),
  usage: async (load, args) => (await import('./usage-command.js')).usageCommand(load, args, process.stdout),
};

/** Runs one command; returns the exit code. Errors become one line on stderr. */
export async function main(argv: string[]): Promise<number> {
  // Kept so a missing file can be explained by the setting that named it.
  let configName: string | undefined;
  let loaded: GatewayConfig | undefined;
  try {
    const { configFile, rest } = extractConfigFlag(argv);
    configName = resolveConfigFile(configFile);
    const loadConfig = (): GatewayConfig => (loaded = loadGatewayConfig(resolveConfigFile(configFile)));
    const [command, ...args] = rest;
    if (command !== undefined && !command.startsWith('-') && (args.includes('--help') || args.includes('-h'))) {
      return printUsage(command, args[0]?.startsWith('-') ? undefined : args[0]);
    }
    const run = command !== undefined && Object.hasOwn(COMMANDS, command) ? COMMANDS[command] : undefined;
    if (run) return (await run(loadConfig, args)) ?? 0;
    if (command === 'demo') {
      // The demo writes a configuration of its own; a --config given here would be silently ignored otherwise.
      if (configFile !== undefined) throw new CliError('demo writes its own configuration in a temporary directory; --config does not apply', 2);
      await (await import('./demo-command.js')).demoCommand(args, process.stdout);
      return 0;
    }
    return builtIn(command, args);
  } catch (err) {
    const explained = explainMissingFile(err, configName, loaded);
    // Located errors keep the bare `FILE:LINE:COL: message` shape that editors and CI annotators read.
    process.stderr.write(explained instanceof ConfigError ? `${explained.message}\n` : `govgate: ${oneLine(explained, commandName(argv))}\n`);
    if (explained instanceof CliError) return explained.exitCode;
    return PARSE_ARGS_CODES.has((explained as { code?: string }).code ?? '') ? 2 : 1;
  }
}

/** What needs no configuration: version and help, and what is not a command. */
function builtIn(command: string | undefined, args: string[]): number {
  switch (command) {
    case 'version':
    case '--version':
    case '-V':
      if (args.length > 0) throw new CliError(`version takes no arguments, got "${args[0]}"`, 2);
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case 'help':
      if (args[0] !== undefined) return printUsage(args[0], args[1]);
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case undefined:
      // No command is a usage error, but the list is what the user needs to see.
      process.stdout.write(`${USAGE}\n`);
      return 2;
    default:
      throw new CliError(`unknown command "${command}"; run "govgate help" for the list`, 2);
  }
}

/** `govgate CMD [SUB] --help` and `govgate help CMD [SUB]`: exit 0, or 2 for a command that does not exist. */
function printUsage(command: string, sub: string | undefined): number {
  const text = commandUsage(command, sub);
  if (text === undefined) throw new CliError(`unknown command "${command}"; run "govgate help" for the list`, 2);
  process.stdout.write(`${text}\n`);
  return 0;
}

/**
 * "file not found" alone leaves the user guessing which setting to fix: the
 * configuration file is chosen by --config, the policy by policy.path.
 */
function explainMissingFile(err: unknown, configName: string | undefined, loaded: GatewayConfig | undefined): unknown {
  if (!(err instanceof ConfigError) || !err.detail.startsWith('file not found')) return err;
  if (loaded === undefined && err.file === configName) {
    return new ConfigError(err.file, err.line, err.col, err.key, `${err.detail}; run govgate in the directory that holds ${configName}, or pass --config FILE (or set $GOVGATE_CONFIG)`);
  }
  if (loaded !== undefined && err.file === displayPath(loaded.policy.path)) {
    return new ConfigError(err.file, err.line, err.col, err.key, `${err.detail}; this path is policy.path in ${loaded.file}`);
  }
  return err;
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

function oneLine(err: unknown, command: string): string {
  if (err instanceof CliError) return err.message;
  const code = (err as { code?: string }).code;
  if (code !== undefined && PARSE_ARGS_CODES.has(code)) {
    // parseArgs explains at length how to pass a value starting with "-"; the first sentence and where to look are enough.
    const first = (err as Error).message.split('\n')[0]!.split(/\.\s/)[0]!.replace(/\.$/, '');
    return `${command}: ${first}; run "govgate ${command} --help" for its usage`;
  }
  if (code?.startsWith('SQLITE_')) return `audit database error (${code}): ${(err as Error).message}`;
  return err instanceof Error ? err.message.split('\n')[0]! : String(err);
}

/** `keys create` from `keys create --bogus`, `backup` from `backup x`: the command to point --help at. */
function commandName(argv: string[]): string {
  // Without extractConfigFlag: this runs while reporting an error, and a dangling --config would throw again.
  const words = argv.filter((arg, i) => !arg.startsWith('--config') && argv[i - 1] !== '--config');
  const [command = '', sub] = words;
  return ['keys', 'policy', 'audit'].includes(command) && sub !== undefined && !sub.startsWith('-') ? `${command} ${sub}` : command;
}

process.exitCode = await main(process.argv.slice(2));
