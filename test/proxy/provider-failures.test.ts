import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import test from 'ava';
import OpenAI from 'openai';
import { closedPort } from '../helpers/closed-port.js';
import { startHarness, type Harness, type ProviderSpec } from '../helpers/gateway-harness.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { logIdOf, outcomeRow, waitFor, type OpenAIErrorShape, type OutcomeRowView } from './support.js';

/*
 * Every way a provider can fail, each injected by a small upstream this file
 * starts itself. Each fault has its own provider (and model prefix), so the
 * metrics, audit rows and request counts of one case never mix with another's.
 */

const CUSTOMER = 'faults';
/** Short enough to keep the file fast, long enough that a healthy loopback answer never trips it. */
const TIMEOUT_MS = 300;

const RATE_LIMIT_BODY = JSON.stringify({
  error: {
    message: 'Rate limit reached for gpt-4o-mini in organization org-test on requests per min (RPM): Limit 3, Used 3, Requested 1.',
    type: 'requests',
    param: null,
    code: 'rate_limit_exceeded',
  },
});
const SERVER_ERROR_BODIES = {
  500: JSON.stringify({ error: { message: 'The server had an error while processing your request. Sorry about that!', type: 'server_error', param: null, code: null } }),
  503: JSON.stringify({ error: { message: 'The engine is currently overloaded, please try again later', type: 'server_error', param: null, code: null } }),
} as const;

function sseEvent(content: string): string {
  const chunk = {
    id: 'chatcmpl-fault',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'gpt-4o-mini',
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
  };
  return `data: ${JSON.stringify(chunk)}\n\n`;
}

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-fault',
  object: 'chat.completion',
  created: 1,
  model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'a reply that will never arrive whole' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 3, completion_tokens: 8, total_tokens: 11 },
});
const TRUNCATED_EVENTS = [sseEvent('first '), sseEvent('second ')];
const IDLE_FIRST_EVENT = sseEvent('only ');

type Fault = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Destroys the connection once everything written so far has left the process. */
function destroyAfterFlush(res: http.ServerResponse, data: string): void {
  // The pause lets the bytes reach the gateway (and through it the client) before the break.
  res.write(data, () => setTimeout(() => res.socket?.destroy(), 100));
}

const FAULTS: Record<string, Fault> = {
  'reset-early': (req) => {
    req.socket.destroy();
  },
  'reset-mid': (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(COMPLETION) });
    destroyAfterFlush(res, COMPLETION.slice(0, Math.floor(COMPLETION.length / 2)));
  },
  'truncated-sse': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    destroyAfterFlush(res, TRUNCATED_EVENTS.join(''));
  },
  // Never answers: the gateway's first-byte timeout is the only way out.
  'slow-first-byte': () => {},
  // Sends one event, then falls silent with the stream still open.
  'idle-stream': (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(IDLE_FIRST_EVENT);
  },
  'rate-limited': (_req, res) => {
    res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7', 'content-length': Buffer.byteLength(RATE_LIMIT_BODY) });
    res.end(RATE_LIMIT_BODY);
  },
  'status-500': (_req, res) => {
    res.writeHead(500, { 'content-type': 'application/json' });
    res.end(SERVER_ERROR_BODIES[500]);
  },
  'status-503': (_req, res) => {
    res.writeHead(503, { 'content-type': 'application/json' });
    res.end(SERVER_ERROR_BODIES[503]);
  },
};

interface FaultUpstream {
  origin: string;
  /** Requests received per fault name: a retrying gateway would show more than one per client request. */
  hits(fault: string): number;
  close(): Promise<void>;
}

/** One server; the first path segment (`/<fault>/v1/...`) picks the fault, so each provider's base_url selects one. */
async function startFaultUpstream(): Promise<FaultUpstream> {
  const counts = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const fault = (req.url ?? '/').split('/')[1] ?? '';
    counts.set(fault, (counts.get(fault) ?? 0) + 1);
    const inject = FAULTS[fault];
    if (!inject) {
      res.writeHead(404).end();
      return;
    }
    if (fault === 'reset-early') {
      inject(req, res);
      return;
    }
    // Read the whole request first, so a later socket.destroy() closes cleanly instead of racing unread input.
    req.resume();
    req.on('end', () => inject(req, res));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    hits: (fault) => counts.get(fault) ?? 0,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let upstream: FaultUpstream;
let gw: Harness;
let key: string;

test.before(async () => {
  upstream = await startFaultUpstream();
  const refusedUrl = `http://127.0.0.1:${await closedPort()}/v1`;
  const providers: ProviderSpec[] = [
    { name: 'refused', base_url: refusedUrl, models: ['refused-*'], api_key_env: 'OPENAI_API_KEY' },
    ...Object.keys(FAULTS).map((fault): ProviderSpec => ({
      name: fault,
      base_url: `${upstream.origin}/${fault}/v1`,
      models: [`${fault}-*`],
      api_key_env: 'OPENAI_API_KEY',
      ...(fault === 'slow-first-byte' ? { first_byte_timeout_ms: TIMEOUT_MS } : {}),
      ...(fault === 'idle-stream' ? { idle_timeout_ms: TIMEOUT_MS } : {}),
    })),
  ];
  gw = await startHarness(upstream.origin, { providers });
  key = gw.createKey(CUSTOMER).key;
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

interface ClientResult {
  /** null when the request failed before any response headers arrived. */
  res: Response | null;
  /** Whatever body text arrived before the end or the break. */
  text: string;
  /** The error fetch or the body read raised, if any. */
  error: unknown;
}

/** A chat completion through plain fetch, reading the body to its end or to the point where it breaks. */
async function chat(model: string, stream = false): Promise<ClientResult> {
  let res: Response;
  try {
    res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello' }], ...(stream ? { stream: true } : {}) }),
    });
  } catch (error) {
    return { res: null, text: '', error };
  }
  let text = '';
  let error: unknown = null;
  const decoder = new TextDecoder();
  const reader = res.body!.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch (err) {
    error = err;
  }
  return { res, text, error };
}

/**
 * The audit log id of a request: from its response header, or, when the
 * response broke before its headers reached the client, from the one decision
 * row of the case's model (each case uses a model no other case does).
 */
function logIdFor(result: ClientResult, model: string): string {
  if (result.res) return logIdOf(result.res.headers);
  const rows = sqliteJson<{ id: string }>(gw.dbPath, `SELECT id FROM usagelog WHERE model = '${model}'`);
  if (rows.length !== 1) throw new Error(`expected one decision row for ${model}, found ${rows.length}`);
  return rows[0]!.id;
}

/** Outcome rows are committed in batches; poll for the one of this request. */
async function outcomeOf(logId: string): Promise<OutcomeRowView | undefined> {
  return waitFor(() => outcomeRow(gw.dbPath, logId), 1500);
}

/**
 * The `code` of a gateway error body, or a description of why the body is not
 * the OpenAI error shape the SDKs build their typed errors from.
 */
function openAIErrorCode(text: string): string {
  let body: OpenAIErrorShape;
  try {
    body = JSON.parse(text) as OpenAIErrorShape;
  } catch {
    return `not JSON: ${text.slice(0, 200)}`;
  }
  const keys = Object.keys(body.error ?? {}).sort().join(',');
  if (keys !== 'code,message,param,type' || typeof body.error.message !== 'string') return `not the OpenAI error shape: ${text.slice(0, 200)}`;
  return body.error.code;
}

async function metricsText(): Promise<string> {
  const res = await fetch(`${gw.url}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  return res.text();
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const m of text.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!.replace(/\\(.)/g, (_s, c: string) => (c === 'n' ? '\n' : c));
  return labels;
}

/** Sum of the samples of `name` whose labels include all of `want` (0 when none match). */
function sampleSum(text: string, name: string, want: Record<string, string>): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const labels = parseLabels(m[2] ?? '');
    if (Object.entries(want).every(([k, v]) => labels[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** The kinds under which /metrics counted upstream errors for one provider. */
function upstreamErrorKinds(text: string, provider: string): Record<string, number> {
  const kinds: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^govgate_upstream_errors_total\{(.*)\} (\S+)/.exec(line);
    if (!m) continue;
    const labels = parseLabels(m[1]!);
    if (labels.provider === provider && labels.kind !== undefined && Number(m[2]) > 0) kinds[labels.kind] = Number(m[2]);
  }
  return kinds;
}

function requestsWithStatus(text: string, model: string, status: number): number {
  return sampleSum(text, 'govgate_requests_total', { customer: CUSTOMER, model, status: String(status) });
}

test('(a) a provider refusing the connection gets 502 upstream_unavailable, recorded and counted', async (t) => {
  const model = 'refused-model';
  const result = await chat(model);
  t.is(result.res?.status, 502);
  t.is(openAIErrorCode(result.text), 'upstream_unavailable');

  const outcome = await outcomeOf(logIdFor(result, model));
  t.like(outcome, { status: 502, error: 'upstream_unavailable' });

  const metrics = await metricsText();
  t.deepEqual(upstreamErrorKinds(metrics, 'refused'), { upstream_unavailable: 1 });
  t.is(requestsWithStatus(metrics, model, 502), 1);
});

test('(b) a connection reset before any response byte gets 502 upstream_unavailable and is not retried', async (t) => {
  const model = 'reset-early-model';
  const result = await chat(model);
  t.is(result.res?.status, 502);
  t.is(openAIErrorCode(result.text), 'upstream_unavailable');

  const outcome = await outcomeOf(logIdFor(result, model));
  t.is(outcome?.status, 502);
  // Both names are honest for a reset before the status line; the row and the metric must agree on it.
  t.true(outcome?.error === 'upstream_unavailable' || outcome?.error === 'upstream_reset', `outcome error ${String(outcome?.error)}`);

  const metrics = await metricsText();
  t.deepEqual(upstreamErrorKinds(metrics, 'reset-early'), { [String(outcome?.error)]: 1 });
  t.is(requestsWithStatus(metrics, model, 502), 1);
  t.is(upstream.hits('reset-early'), 1, 'the provider saw a retry');
});

test('(c) a reset in the middle of a JSON body breaks the client response and records upstream_reset', async (t) => {
  const model = 'reset-mid-model';
  const result = await chat(model);
  // The status line had already been relayed; the only honest signal left is a body that does not complete.
  t.truthy(result.error, `the client read a complete response: ${result.text}`);
  if (result.res) {
    t.is(result.res.status, 200);
    t.true(COMPLETION.startsWith(result.text), 'the client got bytes the provider never sent');
    t.true(result.text.length < COMPLETION.length);
  }

  const outcome = await outcomeOf(logIdFor(result, model));
  t.is(outcome?.error, 'upstream_reset');

  const metrics = await metricsText();
  t.deepEqual(upstreamErrorKinds(metrics, 'reset-mid'), { upstream_reset: 1 });
  t.is(requestsWithStatus(metrics, model, result.res?.status ?? 200), 1);
  t.is(upstream.hits('reset-mid'), 1, 'the provider saw a retry');
});

test('(d) a truncated SSE stream delivers the events sent, then breaks, and records upstream_reset', async (t) => {
  const model = 'truncated-sse-model';
  const result = await chat(model, true);
  t.is(result.res?.status, 200);
  t.is(result.text, TRUNCATED_EVENTS.join(''), 'the events the provider sent did not all reach the client');
  t.false(result.text.includes('[DONE]'));
  t.truthy(result.error, 'the stream ended cleanly although the provider never finished it');

  const outcome = await outcomeOf(logIdFor(result, model));
  t.is(outcome?.error, 'upstream_reset');

  const metrics = await metricsText();
  t.deepEqual(upstreamErrorKinds(metrics, 'truncated-sse'), { upstream_reset: 1 });
  t.is(requestsWithStatus(metrics, model, 200), 1);
  t.is(upstream.hits('truncated-sse'), 1, 'the provider saw a retry');
});

test('(e) a provider slower than first_byte_timeout_ms gets 504 upstream_timeout', async (t) => {
  const model = 'slow-first-byte-model';
  const result = await chat(model);
  t.is(result.res?.status, 504);
  t.is(openAIErrorCode(result.text), 'upstream_timeout');

  const outcome = await outcomeOf(logIdFor(result, model));
  t.like(outcome, { status: 504, error: 'upstream_timeout' });

  const metrics = await metricsText();
  t.deepEqual(upstreamErrorKinds(metrics, 'slow-first-byte'), { upstream_timeout: 1 });
  t.is(requestsWithStatus(metrics, model, 504), 1);
  t.is(upstream.hits('slow-first-byte'), 1, 'the provider saw a retry');
});

test('(f) a stream silent for longer than idle_timeout_ms after its first chunk breaks and records upstream_idle_timeout', async (t) => {
  const model = 'idle-stream-model';
  const result = await chat(model, true);
  t.is(result.res?.status, 200);
  t.is(result.text, IDLE_FIRST_EVENT, 'the first event did not reach the client');
  t.truthy(result.error, 'the stream ended cleanly although the provider never finished it');

  const outcome = await outcomeOf(logIdFor(result, model));
  t.is(outcome?.error, 'upstream_idle_timeout');

  const metrics = await metricsText();
  t.deepEqual(upstreamErrorKinds(metrics, 'idle-stream'), { upstream_idle_timeout: 1 });
  t.is(requestsWithStatus(metrics, model, 200), 1);
  t.is(upstream.hits('idle-stream'), 1, 'the provider saw a retry');
});

test('(g) a provider 429 reaches the client with its Retry-After and body, and the SDK raises RateLimitError', async (t) => {
  const model = 'rate-limited-model';
  const result = await chat(model);
  t.is(result.res?.status, 429);
  t.is(result.res?.headers.get('retry-after'), '7');
  t.is(result.text, RATE_LIMIT_BODY);
  t.is(result.error, null);
  const outcome = await outcomeOf(logIdFor(result, model));
  t.is(outcome?.status, 429);
  t.is(upstream.hits('rate-limited'), 1, 'the provider saw a retry');

  const client = gw.sdk(key);
  const err = await t.throwsAsync(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hello' }] }),
    { instanceOf: OpenAI.RateLimitError },
  );
  t.is(err?.status, 429);
  t.is(err?.code, 'rate_limit_exceeded');
  t.is(err?.headers?.get('retry-after'), '7');
  t.regex(err?.message ?? '', /Rate limit reached for gpt-4o-mini/);
  t.is(upstream.hits('rate-limited'), 2, 'the provider saw a retry');

  const metrics = await metricsText();
  t.is(requestsWithStatus(metrics, model, 429), 2);
  // A well-formed HTTP answer is the provider's verdict, counted as such and not as a transport failure.
  t.deepEqual(upstreamErrorKinds(metrics, 'rate-limited'), { http_429: 2 });
});

for (const status of [500, 503] as const) {
  test(`(h) a provider ${status} is passed through with its status and body and recorded`, async (t) => {
    const model = `status-${status}-model`;
    const result = await chat(model);
    t.is(result.res?.status, status);
    t.is(result.text, SERVER_ERROR_BODIES[status]);
    t.is(result.error, null);
    t.truthy(result.res?.headers.get('x-request-id'));

    const outcome = await outcomeOf(logIdFor(result, model));
    t.is(outcome?.status, status);

    const metrics = await metricsText();
    t.is(requestsWithStatus(metrics, model, status), 1);
    t.deepEqual(upstreamErrorKinds(metrics, `status-${status}`), { http_5xx: 1 });
    t.is(upstream.hits(`status-${status}`), 1, 'the provider saw a retry');
  });
}
