import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { REPO_ROOT } from './gateway-harness.js';

/** The CLI from source, runnable from any working directory (tsx is resolved from the repository). */
const TSX_LOADER = import.meta.resolve('tsx');
const CLI_ENTRY = path.join(REPO_ROOT, 'gateway/cli/main.ts');

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function cliArgs(args: string[]): string[] {
  return ['--import', TSX_LOADER, CLI_ENTRY, ...args];
}

/** Runs `govgate ARGS` to completion in `cwd`. */
export function runCli(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): CliResult {
  const result = spawnSync(process.execPath, cliArgs(args), {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 30_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

export interface ServeProcess {
  readonly child: ChildProcess;
  /** http://127.0.0.1:PORT, parsed from the "listening on" line. */
  readonly url: string;
  stdout(): string;
  stderr(): string;
  /** Sends SIGTERM and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `govgate serve` as a child process and waits until it listens. */
export async function startServe(opts: { cwd: string; env?: NodeJS.ProcessEnv; args?: string[]; timeoutMs?: number }): Promise<ServeProcess> {
  const child = spawn(process.execPath, cliArgs(['serve', ...(opts.args ?? [])]), {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    // Starting tsx takes ~19 s on a busy 2-core machine; a child that never started must not outlive the test either.
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`govgate serve did not start:\n${err}`));
    }, opts.timeoutMs ?? 45_000);
    const check = () => {
      const m = /listening on (http:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stderr!.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`govgate serve exited with ${code}:\n${err}`));
    });
  });
  return {
    child,
    url,
    stdout: () => out,
    stderr: () => err,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = (await once(child, 'exit')) as [number | null];
      return code;
    },
  };
}
