import { userInfo } from 'node:os';
import { CliError } from './cli-error.js';

/** What an actor may be called: a user name, an email, a ticket; nothing that could break a log line. */
const ACTOR = /^[\x21-\x7E][\x20-\x7E]{0,127}$/;

/**
 * Who a CLI command acts for, as the control log records it: `--actor`, else
 * `$GOVGATE_ACTOR` (set by automation that runs commands for someone), else
 * the OS user running the command.
 */
export function cliActor(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const chosen = flag ?? (env.GOVGATE_ACTOR || undefined);
  if (chosen !== undefined) {
    if (!ACTOR.test(chosen)) throw new CliError(`${flag !== undefined ? '--actor' : '$GOVGATE_ACTOR'} must be 1 to 128 printable ASCII characters, got ${JSON.stringify(chosen)}`, 2);
    return chosen;
  }
  try {
    return userInfo().username;
  } catch {
    // A container may run as a uid with no passwd entry.
    return `uid:${process.getuid?.() ?? 'unknown'}`;
  }
}
