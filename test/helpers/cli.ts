import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
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

/**
 * Compiles the gateway once into a private directory and returns its CLI entry,
 * for tests that start many gateway processes: a start from JavaScript costs a
 * third of one through tsx. The directory sits under node_modules/.cache so the
 * build resolves the repository's dependencies; `remove()` deletes it.
 */
export function buildGatewayForChildren(): { entry: string; remove(): void } {
  const outDir = path.join(REPO_ROOT, 'node_modules/.cache', `govgate-test-build-${process.pid}`);
  mkdirSync(outDir, { recursive: true });
  // Inside node_modules, Node finds no package scope above the files: say they are ES modules.
  writeFileSync(path.join(outDir, 'package.json'), '{"type":"module"}\n');
  const tsc = path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', path.join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', outDir, '--incremental', 'false', '--sourceMap', 'false'], {
    cwd: REPO_ROOT,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`tsc failed: ${r.stdout}${r.stderr}`);
  return { entry: path.join(outDir, 'gateway/cli/main.js'), remove: () => rmSync(outDir, { recursive: true, force: true }) };
}

/**
 * Starts `govgate serve` as a child process and waits until it listens; `entry` runs a build from
 * buildGatewayForChildren instead of the sources; `prefix` is a command that runs node (`taskset -c 0`).
 */
export async function startServe(opts: { cwd: string; env?: NodeJS.ProcessEnv; args?: string[]; timeoutMs?: number; entry?: string; prefix?: string[] }): Promise<ServeProcess> {
  const args = ['serve', ...(opts.args ?? [])];
  const [command, ...before] = [...(opts.prefix ?? []), process.execPath];
  const child = spawn(command!, [...before, ...(opts.entry ? [opts.entry, ...args] : cliArgs(args))], {
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
