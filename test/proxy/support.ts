import * as http from 'node:http';
import { closedPort } from '../helpers/closed-port.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';

/** Polls until `probe` returns a value other than undefined, or gives up after `timeoutMs` and returns undefined. */
export async function waitFor<T>(probe: () => T | undefined, timeoutMs: number, intervalMs = 50): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The log id header, checked to be a UUID before it is ever interpolated into SQL. */
export function logIdOf(headers: { get(name: string): string | null }): string {
  const id = headers.get('x-governance-log-id');
  if (id === null || !UUID.test(id)) throw new Error(`x-governance-log-id is not a UUID: ${String(id)}`);
  return id;
}

export interface DecisionRowView {
  customer_id: string;
  model: string | null;
  operation: string;
  allowed: number;
  risk_score: number;
  reason: string;
}

export function decisionRow(dbPath: string, logId: string): DecisionRowView | undefined {
  if (!UUID.test(logId)) throw new Error(`not a UUID: ${logId}`);
  return sqliteJson<DecisionRowView>(
    dbPath,
    `SELECT customer_id, model, operation, allowed, risk_score, reason FROM usagelog WHERE id = '${logId}'`,
  )[0];
}

export interface OutcomeRowView {
  status: number | null;
  error: string | null;
  prompt_tokens: number | null;
  completion_tokens: number | null;
  total_tokens: number | null;
}

/** The outcome row is appended after the response ends, so callers poll for it. */
export function outcomeRow(dbPath: string, logId: string): OutcomeRowView | undefined {
  if (!UUID.test(logId)) throw new Error(`not a UUID: ${logId}`);
  return sqliteJson<OutcomeRowView>(
    dbPath,
    `SELECT status, error, prompt_tokens, completion_tokens, total_tokens FROM usagelog_outcome WHERE log_id = '${logId}'`,
  )[0];
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * A request with the path sent exactly as written: fetch and URL normalise
 * dot segments away on the client, which would hide what the gateway does with them.
 */
export function rawRequest(
  origin: string,
  opts: { method?: string; path: string; headers?: http.OutgoingHttpHeaders; body?: Buffer | string },
): Promise<RawResponse> {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: hostname, port: Number(port), method: opts.method ?? 'GET', path: opts.path, headers: opts.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** A provider base URL on which nothing listens. */
export async function closedPortUrl(): Promise<string> {
  return `http://127.0.0.1:${await closedPort()}/v1`;
}

export interface OpenAIErrorShape {
  error: { message: string; type: string; param: string | null; code: string };
}

export async function errorBody(res: Response): Promise<OpenAIErrorShape> {
  return (await res.json()) as OpenAIErrorShape;
}
