import * as http from 'node:http';
import * as net from 'node:net';
import fc from 'fast-check';
import { ERROR_CATALOGUE } from '../../gateway/errors/catalogue.js';
import { createErrorReporter, type ErrorReporter } from '../../gateway/observability/error-reporter.js';

/**
 * Shared pieces of the fuzz suites: a client that sends paths and headers
 * exactly as generated, the invariants every answer must satisfy, and a few
 * arbitraries both suites draw from.
 */

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface Outgoing {
  method: string;
  /** Sent as-is: no normalisation of dot segments or percent-encoding. */
  path: string;
  /** Raw header list, in order, with the casing and duplicates as generated. */
  headers: (readonly [string, string])[];
  body?: Buffer;
}

/**
 * One keep-alive client per suite: requests go one after the other over the
 * same connection, as a busy SDK client's would, and a connection the gateway
 * closes is replaced by the agent.
 */
export class RawClient {
  private agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  private readonly host: string;
  private readonly port: number;

  constructor(origin: string) {
    const url = new URL(origin);
    this.host = url.hostname;
    this.port = Number(url.port);
  }

  get hostHeader(): string {
    return `${this.host}:${this.port}`;
  }

  async send(out: Outgoing): Promise<Answer> {
    try {
      return await this.exchange(out);
    } catch (err) {
      // A connection that failed mid-answer may still hold bytes; the next case must not inherit them.
      this.agent.destroy();
      this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      throw err;
    }
  }

  private exchange(out: Outgoing): Promise<Answer> {
    const flat: string[] = [];
    for (const [name, value] of out.headers) flat.push(name, value);
    return new Promise((resolve, reject) => {
      let settled = false;
      const req = http.request(
        { host: this.host, port: this.port, method: out.method, path: out.path, headers: flat, agent: this.agent, setHost: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            settled = true;
            resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
          });
          res.on('error', (err) => {
            if (!settled) reject(err);
          });
        },
      );
      // A handshake the gateway accepts is not something these suites follow up: note the 101 and hang up.
      req.on('upgrade', (res, socket) => {
        socket.destroy();
        settled = true;
        resolve({ status: res.statusCode ?? 101, headers: res.headers, body: Buffer.alloc(0) });
      });
      req.on('error', (err) => {
        if (!settled) reject(err);
      });
      req.end(out.body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/**
 * Sends bytes on a fresh connection and collects everything until the gateway
 * closes it. The write side stays open: Node treats a half-closed request as a
 * client that went away, which is not the case under test.
 */
export function sendBytes(origin: string, bytes: Buffer, timeoutMs = 5000): Promise<Buffer> {
  const { hostname, port } = new URL(origin);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms to ${JSON.stringify(bytes.toString('latin1').slice(0, 300))}`));
    }, timeoutMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => {
      // A reset after the answer was read still leaves the answer to judge; none at all is judged by the caller.
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
    socket.write(bytes);
  });
}

/** Parses the final HTTP/1.x response in `raw`, skipping interim 1xx ones; undefined when there is none. */
export function parseResponse(raw: Buffer): Answer | undefined {
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) return undefined;
    const head = rest.subarray(0, end).toString('latin1').split('\r\n');
    const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(head[0] ?? '');
    if (!statusLine) return undefined;
    const status = Number(statusLine[1]);
    rest = rest.subarray(end + 4);
    if (status >= 100 && status < 200) continue;
    const headers: http.IncomingHttpHeaders = {};
    for (const line of head.slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? NaN);
    return { status, headers, body: Number.isFinite(length) ? rest.subarray(0, length) : rest };
  }
}

type CatalogueCode = keyof typeof ERROR_CATALOGUE;

/** The `code` of an answer the gateway produced itself, after checking its shape; throws on any breach. */
export function gatewayErrorCode(answer: Answer, what: string, method = 'POST'): CatalogueCode {
  const where = `${what} → ${answer.status} ${answer.body.toString('utf8').slice(0, 300)}`;
  if (method === 'HEAD') throw new Error(`gatewayErrorCode cannot read a HEAD answer (${where})`);
  if (!String(answer.headers['content-type'] ?? '').startsWith('application/json')) throw new Error(`error answer is not JSON: ${where}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(answer.body.toString('utf8'));
  } catch {
    throw new Error(`error body does not parse: ${where}`);
  }
  const error = (parsed as { error?: unknown }).error as Record<string, unknown> | undefined;
  if (typeof error !== 'object' || error === null) throw new Error(`error body has no "error" object: ${where}`);
  for (const field of ['message', 'type', 'param', 'code'] as const) {
    if (!(field in error)) throw new Error(`error body lacks "${field}": ${where}`);
  }
  if (typeof error.message !== 'string' || typeof error.type !== 'string') throw new Error(`error message/type not strings: ${where}`);
  if (error.param !== null && typeof error.param !== 'string') throw new Error(`error param neither null nor a string: ${where}`);
  const code = error.code;
  if (typeof code !== 'string' || !Object.hasOwn(ERROR_CATALOGUE, code)) throw new Error(`error code not in the catalogue: ${where}`);
  const entry = ERROR_CATALOGUE[code as CatalogueCode];
  if (entry.status !== answer.status) throw new Error(`code ${code} belongs with ${entry.status}: ${where}`);
  if (entry.type !== error.type) throw new Error(`code ${code} belongs with type ${entry.type}: ${where}`);
  return code as CatalogueCode;
}

/**
 * What every answer to client input must satisfy: no 5xx (the mock upstream
 * is healthy, so even 502/504 would be the gateway's fault), a request id,
 * and, for an error the gateway produced itself, the OpenAI error shape with
 * a catalogued code. A 4xx relayed from the provider (decision `allow`) is
 * the provider's to shape.
 */
export function assertSound(answer: Answer, what: string, method = 'POST'): CatalogueCode | null {
  if (answer.status >= 500) throw new Error(`5xx for client input: ${what} → ${answer.status} ${answer.body.toString('utf8').slice(0, 300)}`);
  if (typeof answer.headers['x-request-id'] !== 'string' || answer.headers['x-request-id'] === '') {
    throw new Error(`answer without x-request-id: ${what} → ${answer.status}`);
  }
  if (answer.status < 400 || answer.headers['x-governance-decision'] === 'allow' || method === 'HEAD') return null;
  return gatewayErrorCode(answer, what, method);
}

/** Everything the gateway's process must not do while it is being fuzzed. */
export class ProcessFaults {
  readonly faults: string[] = [];
  private readonly onRejection = (reason: unknown) => void this.faults.push(`unhandledRejection: ${describeError(reason)}`);
  private readonly onException = (err: unknown) => void this.faults.push(`uncaughtException: ${describeError(err)}`);

  start(): void {
    process.on('unhandledRejection', this.onRejection);
    process.on('uncaughtException', this.onException);
  }

  stop(): void {
    process.off('unhandledRejection', this.onRejection);
    process.off('uncaughtException', this.onException);
  }
}

/** A reporter that keeps what the gateway reported as an exception: client input must never cause one. */
export function recordingReporter(): { reporter: ErrorReporter; exceptions: string[] } {
  const exceptions: string[] = [];
  const quiet = createErrorReporter(undefined, 'test');
  const reporter: ErrorReporter = {
    enabled: quiet.enabled,
    exception: (err) => void exceptions.push(describeError(err)),
    serverError: (code, status) => void exceptions.push(`serverError ${status} ${code}`),
    upstreamError: (provider, status) => void exceptions.push(`upstreamError ${provider} ${status}`),
    authFailure: (failure) => quiet.authFailure(failure),
    message: (text, tags) => quiet.message(text, tags),
    flush: (ms) => quiet.flush(ms),
  };
  return { reporter, exceptions };
}

export function describeError(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}\n${err.stack ?? ''}` : String(err);
}

/** A header value Node will put on the wire: tab, printable ASCII and obs-text, without the whitespace Node trims. */
export const headerValue = (maxLength = 200): fc.Arbitrary<string> =>
  fc
    .string({ unit: fc.oneof({ weight: 8, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) }, fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c)), fc.constant('\t')), maxLength })
    .map((s) => s.trim());

/** An HTTP token, the only thing Node lets through as a header name or method. */
export const token = (maxLength = 30): fc.Arbitrary<string> => fc.stringMatching(new RegExp(`^[A-Za-z0-9!#$%&'*+.^_\`|~-]{1,${maxLength}}$`));

/** Randomly re-cases a header name: names are case-insensitive, so this must never change the outcome. */
export const oddCase = (name: string): fc.Arbitrary<string> => fc.mixedCase(fc.constant(name));

/** Strict JSON: UTF-8 (a BOM allowed), per RFC 8259. Undefined when the bytes are not JSON. */
export function strictJson(body: Buffer): { value: unknown } | undefined {
  try {
    const text = new TextDecoder('utf-8', { fatal: true }).decode(body);
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

/** Lenient JSON: what any decoder would accept (bad UTF-8 replaced). Undefined when not even that parses. */
export function lenientJson(body: Buffer): { value: unknown } | undefined {
  try {
    let text = body.toString('utf8');
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    return { value: JSON.parse(text) as unknown };
  } catch {
    return undefined;
  }
}

/** A declared JSON body: application/json or any +json type, whatever the parameters and casing. */
export function isJsonType(contentType: string | undefined): boolean {
  const type = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  return type === 'application/json' || type.endsWith('+json');
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
