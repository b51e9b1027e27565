import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import test from 'ava';
import { closedPort } from '../helpers/closed-port.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { decisionRow } from './support.js';

const harnesses: Harness[] = [];
const servers: Server[] = [];
const upstreams: MockUpstream[] = [];
let upstream: MockUpstream;

test.before(async () => {
  upstream = await startMockUpstream();
  upstreams.push(upstream);
});

test.after.always(async () => {
  for (const h of harnesses) await h.close();
  for (const s of servers) await new Promise((resolve) => s.close(resolve));
  for (const u of upstreams) await u.close();
});

async function harness(opts: Parameters<typeof startHarness>[1]): Promise<{ gw: Harness; key: string }> {
  const gw = await startHarness(upstream.url, opts);
  harnesses.push(gw);
  return { gw, key: gw.createKey('acme').key };
}

async function chat(gw: Harness, key: string): Promise<{ status: number; code?: string; retryAfter: string | null; logId: string | null }> {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
  const body = (await res.json()) as { error?: { code?: string } };
  return { status: res.status, code: body.error?.code, retryAfter: res.headers.get('retry-after'), logId: res.headers.get('x-governance-log-id') };
}

/** An upstream whose first `failures` connections are cut before any answer; it counts what it saw. */
async function flakyUpstream(failures: number, delayMs = 0): Promise<{ url: string; seen: () => number }> {
  let seen = 0;
  const server = createServer((req, res) => {
    seen++;
    if (seen <= failures) {
      req.socket.destroy();
      return;
    }
    setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ id: 'x', object: 'chat.completion', choices: [], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
    }, delayMs);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, seen: () => seen };
}

test('past max_in_flight the client gets 503 overloaded with Retry-After, and its row says it was not forwarded', async (t) => {
  // A provider of its own: its delay would slow every other test's requests.
  const slow = await startMockUpstream();
  upstreams.push(slow);
  const { gw, key } = await harness({ providers: [{ name: 'openai', base_url: slow.url, max_in_flight: 2, api_key_env: 'OPENAI_API_KEY' }] });
  slow.setDelay(500);
  try {
    const results = await Promise.all([chat(gw, key), chat(gw, key), chat(gw, key)]);
    const refused = results.filter((r) => r.status === 503);
    t.is(results.filter((r) => r.status === 200).length, 2);
    t.is(refused.length, 1);
    t.is(refused[0]!.code, 'overloaded');
    t.is(refused[0]!.retryAfter, '1');
    t.like(decisionRow(gw.dbPath, refused[0]!.logId!), { allowed: 0 });
    t.regex(decisionRow(gw.dbPath, refused[0]!.logId!)!.reason, /^overloaded: provider openai has too many requests in flight/);
  } finally {
    slow.setDelay(0);
  }
  t.is((await chat(gw, key)).status, 200, 'places are given back when requests end');
});

// Serial: timed against the first backoff (100 ms), which the other tests' gateway starts could outlast.
test.serial('with retries a refused connection is tried again after a backoff; without, it is a 502', async (t) => {
  // Nothing listens on the port when the request arrives; the provider comes up during the first backoff (100 ms).
  const port = await closedPort();
  const { gw, key } = await harness({ providers: [{ name: 'openai', base_url: `http://127.0.0.1:${port}/v1`, retries: 2 }] });
  const pending = chat(gw, key);
  await new Promise((r) => setTimeout(r, 30));
  const late = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"id":"x","object":"chat.completion","choices":[]}');
  });
  servers.push(late);
  await new Promise<void>((resolve) => late.listen(port, '127.0.0.1', resolve));
  t.is((await pending).status, 200);

  const noRetry = await harness({ providers: [{ name: 'openai', base_url: `http://127.0.0.1:${await closedPort()}/v1` }] });
  const r = await chat(noRetry.gw, noRetry.key);
  t.is(r.status, 502);
  t.is(r.code, 'upstream_unavailable');
});

test('a connection cut after the request was sent is never retried: the provider may have acted on it', async (t) => {
  const flaky = await flakyUpstream(1);
  const { gw, key } = await harness({ providers: [{ name: 'openai', base_url: flaky.url, retries: 3 }] });
  t.is((await chat(gw, key)).status, 502);
  t.is(flaky.seen(), 1);
});

test('a timeout is never retried, even with retries on', async (t) => {
  const slow = await flakyUpstream(0, 1500);
  const { gw, key } = await harness({ providers: [{ name: 'openai', base_url: slow.url, retries: 3, first_byte_timeout_ms: 300 }] });
  const r = await chat(gw, key);
  t.is(r.status, 504);
  t.is(r.code, 'upstream_timeout');
  t.is(slow.seen(), 1);
});

test('past server.max_connections a new connection is answered 503 overloaded and closed', async (t) => {
  const { gw } = await harness({ server: { max_connections: 2 } });
  const { port } = new URL(gw.url);
  const idle = [connect(Number(port), '127.0.0.1'), connect(Number(port), '127.0.0.1')];
  try {
    await Promise.all(idle.map((s) => new Promise((resolve) => s.once('connect', resolve))));
    const answer = await new Promise<string>((resolve) => {
      const third = connect(Number(port), '127.0.0.1');
      let text = '';
      third.setEncoding('utf8').on('data', (d: string) => (text += d));
      third.on('close', () => resolve(text));
      third.on('error', () => {});
    });
    t.regex(answer, /^HTTP\/1\.1 503 /);
    t.regex(answer, /retry-after: 1/i);
    t.regex(answer, /"code":"overloaded"/);
  } finally {
    for (const s of idle) s.destroy();
  }
});
