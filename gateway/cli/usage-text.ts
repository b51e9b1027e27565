/** Every command's usage, so `govgate help`, `govgate CMD --help` and usage errors say the same thing. */

const CONFIG_NOTE = '--config FILE is accepted by every command; it defaults to $GOVGATE_CONFIG, then config/gateway.yaml';

export const USAGE = `usage: govgate <command> [--config FILE]

  serve                                   run the gateway in the foreground
  demo [--port N]                         run a gateway against a local fake provider, to try it offline
  keys [list] [--customer ID] [--json]    list keys (without secrets)
  keys create --customer ID [--name LABEL] [--json]
  keys revoke KEY_ID
  policy check [FILE]
  policy test --customer ID --model M --operation OP [--meta k=v]... [--max-tokens N] [--stream]
              [--key KEY_ID] [--expect allow|block] [--json]
  cleanup-logs [DAYS]
  audit verify [--export-head] [--against FILE]
  backup                                  write a verified snapshot of the audit database
  usage [--customer ID] [--since 30d] [--json]
  version                                 print the version (also --version)
  help [COMMAND]                          this list, or one command's usage (also COMMAND --help)

${CONFIG_NOTE}
exit codes: 0 success, 1 failure, 2 usage error`;

const COMMANDS: Readonly<Record<string, string>> = {
  serve: `usage: govgate serve [--config FILE]

Runs the gateway in the foreground until SIGTERM or SIGINT, then drains in-flight requests and exits 0.`,
  demo: `usage: govgate demo [--port N]

Starts a fake OpenAI-compatible provider on 127.0.0.1 and a gateway wired to it in a temporary
directory, creates a key for customer "demo" and prints three commands to try. Serves until
SIGINT or SIGTERM, then removes the temporary directory. --port picks the gateway's port
(default 8080; 0 for any free port). Needs no configuration and no provider account.`,
  keys: `usage: govgate keys [list|create|revoke] ...

  keys [list] [--customer ID] [--json]    list keys (without secrets); the default
  keys create --customer ID [--name LABEL] [--json]
  keys revoke KEY_ID`,
  'keys list': `usage: govgate keys list [--customer ID] [--json]

Lists keys without their secrets: id, customer, name, prefix, created, revoked.`,
  'keys create': `usage: govgate keys create --customer ID [--name LABEL] [--json]

Creates a key; its secret is printed once, as the last line (or as "key" with --json).`,
  'keys revoke': `usage: govgate keys revoke KEY_ID

Revokes a key; a running gateway refuses it within 1 second.`,
  policy: `usage: govgate policy check|test ...

  policy check [FILE]
  policy test --customer ID --model M --operation OP [--meta k=v]... [--max-tokens N] [--stream]
              [--key KEY_ID] [--expect allow|block] [--json]`,
  'policy check': `usage: govgate policy check [FILE]

Validates a policy file (default: policy.path of the configuration). Exit 1 with FILE:LINE:COL: message when invalid.`,
  'policy test': `usage: govgate policy test --customer ID --model M --operation OP [--meta k=v]... [--max-tokens N]
                          [--stream] [--key KEY_ID] [--expect allow|block] [--json]

Prints the decision the policy on disk would take; writes no audit row. With --expect, exits 1
(one line saying what was expected and what was decided) when the decision differs, for CI.`,
  'cleanup-logs': `usage: govgate cleanup-logs [DAYS]

Deletes audit rows older than DAYS (default audit.retention_days; never fewer).`,
  audit: `usage: govgate audit verify [--export-head] [--against FILE]

Walks the audit hash chains: exit 0 when intact, 1 naming the first bad row.`,
  'audit verify': `usage: govgate audit verify [--export-head] [--against FILE]

Walks the audit hash chains: exit 0 when intact, 1 naming the first bad row.
--export-head prints the chain heads as JSON; --against FILE (or - for stdin) checks them still hold.`,
  backup: `usage: govgate backup

Writes a verified snapshot of the audit database into audit.backup_dir and prints its path.`,
  usage: `usage: govgate usage [--customer ID] [--since 30d] [--json]

Requests, blocked requests and provider-reported tokens per customer and model since --since ago (d, h or m).`,
  version: 'usage: govgate version\n\nPrints the version (also govgate --version).',
  help: 'usage: govgate help [COMMAND]\n\nPrints the list of commands, or the usage of one.',
};

/** The most specific usage for `command [sub]`, or undefined for an unknown command. */
export function commandUsage(command: string, sub: string | undefined): string | undefined {
  // Own keys only: `govgate constructor --help` must not find Object.prototype.
  const key = sub !== undefined && Object.hasOwn(COMMANDS, `${command} ${sub}`) ? `${command} ${sub}` : command;
  return Object.hasOwn(COMMANDS, key) ? `${COMMANDS[key]}\n\n${CONFIG_NOTE}` : undefined;
}
