/** Every command's usage, so `govgate help`, `govgate CMD --help` and usage errors say the same thing. */

const ACTOR_NOTE = 'The control log records the change with --actor NAME, else $GOVGATE_ACTOR, else your OS user.';

const CONFIG_NOTE = '--config FILE is accepted by every command; it defaults to $GOVGATE_CONFIG, then config/gateway.yaml';

export const USAGE = `usage: govgate <command> [--config FILE]

  serve                                   run the gateway in the foreground
  demo [--port N]                         run a gateway against a local fake provider, to try it offline
  keys [list] [--customer ID] [--json]    list keys (without secrets)
  keys create --customer ID [--name LABEL] [--json] [--actor NAME]
  keys revoke KEY_ID [--actor NAME]
  policy check [FILE]
  policy test --customer ID --model M --operation OP [--meta k=v]... [--max-tokens N] [--stream]
              [--key KEY_ID] [--expect allow|block] [--json]
  cleanup-logs [DAYS] [--actor NAME]
  audit verify [--export-head] [--against FILE]
  audit verify --fleet                    verify every gateway's chains in the fleet database
  audit explain LOG_ID [--json]           replay one decision against the policy that made it
  audit export [--since T] [--until T] [--format jsonl|csv] [--out FILE]
  backup [--actor NAME]                   write a verified snapshot of the audit database
  usage [--customer ID] [--gateway ID] [--since 30d] [--json]
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
  keys create --customer ID [--name LABEL] [--json] [--actor NAME]
  keys revoke KEY_ID [--actor NAME]`,
  'keys list': `usage: govgate keys list [--customer ID] [--json]

Lists keys without their secrets: id, customer, name, prefix, created, revoked.`,
  'keys create': `usage: govgate keys create --customer ID [--name LABEL] [--json] [--actor NAME]

Creates a key; its secret is printed once, as the last line (or as "key" with --json).
${ACTOR_NOTE}`,
  'keys revoke': `usage: govgate keys revoke KEY_ID [--actor NAME]

Revokes a key; a running gateway refuses it within 1 second.
${ACTOR_NOTE}`,
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
  'cleanup-logs': `usage: govgate cleanup-logs [DAYS] [--actor NAME]

Deletes audit rows older than DAYS (default audit.retention_days; never fewer).
${ACTOR_NOTE}`,
  audit: `usage: govgate audit verify|explain|export ...

  audit verify [--export-head] [--against FILE]
  audit verify --fleet
  audit explain LOG_ID [--json]
  audit export [--since T] [--until T] [--format jsonl|csv] [--out FILE]`,
  'audit explain': `usage: govgate audit explain LOG_ID [--json]

Prints a decision row, its outcome and the policy version that decided it, then replays the
recorded facts against that policy: each rule and limit with whether it matched, the risk sum,
the threshold, and whether the replay agrees with the recorded decision (exit 1 when it does not).`,
  'audit export': `usage: govgate audit export [--since T] [--until T] [--format jsonl|csv] [--out FILE]

Writes the audit rows created in [--since, --until) with their hashes, the retention anchors and
the chain heads needed to verify the export on its own (tools/verify_export.py). T is an ISO date
or time (UTC), or an age such as 30d, 12h, 15m. Default: everything, as JSON lines, to stdout.`,
  'audit verify': `usage: govgate audit verify [--export-head] [--against FILE]
       govgate audit verify --fleet

Walks the audit hash chains: exit 0 when intact, 1 naming the first bad row.
--export-head prints the chain heads as JSON; --against FILE (or - for stdin) checks them still hold.
--fleet walks every gateway's chains in the fleet database instead (fleet mode only), naming the
gateway and row of the first break.`,
  backup: `usage: govgate backup [--actor NAME]

Writes a verified snapshot of the audit database into audit.backup_dir and prints its path.
${ACTOR_NOTE}`,
  usage: `usage: govgate usage [--customer ID] [--gateway ID] [--since 30d] [--json]

Requests, blocked requests and provider-reported tokens per customer and model since --since ago (d, h or m).
In fleet mode it reads the fleet database: one line per gateway, customer and model; --gateway keeps one gateway.`,
  version: 'usage: govgate version\n\nPrints the version (also govgate --version).',
  help: 'usage: govgate help [COMMAND]\n\nPrints the list of commands, or the usage of one.',
};

/** The most specific usage for `command [sub]`, or undefined for an unknown command. */
export function commandUsage(command: string, sub: string | undefined): string | undefined {
  // Own keys only: `govgate constructor --help` must not find Object.prototype.
  const key = sub !== undefined && Object.hasOwn(COMMANDS, `${command} ${sub}`) ? `${command} ${sub}` : command;
  return Object.hasOwn(COMMANDS, key) ? `${COMMANDS[key]}\n\n${CONFIG_NOTE}` : undefined;
}
