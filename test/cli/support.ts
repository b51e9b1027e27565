import { execFile } from 'node:child_process';
import * as http from 'node:http';
import { cliArgs, type CliResult } from '../helpers/cli.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';

/** Polls `probe` until it returns something other than undefined, or gives up after `timeoutMs`. */
export async function poll<T>(probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, intervalMs = 50): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/**
 * 1-based line and column of the `nth` occurrence of `needle` in `text`, so a
 * test states where an error must point by naming the offending text.
 */
export function positionOf(text: string, needle: string, nth = 0): { line: number; col: number } {
  let at = -1;
  for (let i = 0; i <= nth; i++) {
    at = text.indexOf(needle, at + 1);
    if (at === -1) throw new Error(`fixture does not contain occurrence ${nth} of ${JSON.stringify(needle)}`);
  }
  const before = text.slice(0, at);
  const line = before.split('\n').length;
  const col = at - (before.lastIndexOf('\n') + 1) + 1;
  return { line, col };
}

export interface CheckAnswer {
  status: number;
  body: { allowed?: boolean; risk_score?: number; reason?: string; rules?: string[]; log_id?: string; error?: { code?: string } };
}

/**
 * POST /v1/check: asks the running gateway for a decision without forwarding anything.
 * A fresh connection each time: runCli blocks this process's event loop for
 * seconds, long enough for a pooled keep-alive socket to go stale and reset.
 */
export function askCheck(
  baseUrl: string,
  key: string,
  question: { model: string; operation: string; metadata?: Record<string, string | number | boolean>; max_tokens?: number },
): Promise<CheckAnswer> {
  const payload = JSON.stringify(question);
  return new Promise((resolve, reject) => {
    const req = http.request(
      `${baseUrl}/v1/check`,
      {
        method: 'POST',
        agent: false,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as CheckAnswer['body'] });
          } catch {
            reject(new Error(`/v1/check answered ${res.statusCode} with non-JSON: ${text}`));
          }
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

export function usagelogCount(dbPath: string): number {
  return sqliteJson<{ n: number }>(dbPath, 'SELECT COUNT(*) AS n FROM usagelog')[0]!.n;
}

/** The non-empty lines of a stream's output. */
export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() !== '');
}

/** At most this many CLI children at once: each costs a tsx start, and a 2-core machine stalls under dozens. */
const MAX_CHILDREN = 2;
let running = 0;
const waiting: (() => void)[] = [];

/**
 * `govgate ARGS` without blocking the event loop, so a file's many short CLI
 * runs proceed side by side (a few at a time) instead of one after another.
 */
export async function runCliAsync(args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<CliResult> {
  if (running >= MAX_CHILDREN) await new Promise<void>((resolve) => waiting.push(resolve));
  running++;
  try {
    return await new Promise((resolve) => {
      execFile(process.execPath, cliArgs(args), { cwd: opts.cwd, env: { ...process.env, ...opts.env }, encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000 }, (err, stdout, stderr) => {
        // A non-zero exit is a result to check, not a failure of the run; a kill (timeout) has no code.
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : null;
        resolve({ status: code, stdout, stderr });
      });
    });
  } finally {
    running--;
    waiting.shift()?.();
  }
}
