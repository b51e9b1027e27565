import { connect, type Socket } from 'node:net';
import test from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { newTag, startMockUpstream, TAG_HEADER, type MockUpstream, type Tag } from '../helpers/mock-upstream.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';

let upstream: MockUpstream;
let gw: Harness;
let key: string;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, { server: { headers_timeout_ms: 500, request_timeout_ms: 1500 } });
  key = gw.createKey('acme').key;
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

/** Writes raw bytes and collects everything the gateway answers until it closes the connection. */
function raw(write: (socket: Socket) => void, timeoutMs = 5000): Promise<{ text: string; closedAfterMs: number }> {
  const { port } = new URL(gw.url);
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(Number(port), '127.0.0.1', () => write(socket));
    let text = '';
    socket.setEncoding('utf8').on('data', (d: string) => (text += d));
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the gateway kept the connection open for ${timeoutMs} ms; got: ${text}`));
    }, timeoutMs);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, closedAfterMs: Date.now() - started });
    });
    socket.on('error', () => {});
  });
}

const tagLine = (tag: Tag) => `${TAG_HEADER}: ${tag[TAG_HEADER]}\r\n`;

function statusAndCode(text: string): { status: number; code: string | undefined } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]);
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  return { status, code: (JSON.parse(body) as { error?: { code?: string } }).error?.code };
}

test('headers larger than the server accepts get 431 in the OpenAI error shape', async (t) => {
  const tag = newTag();
  const { text } = await raw((s) => s.write(`GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n${tagLine(tag)}X-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`));
  t.deepEqual(statusAndCode(text), { status: 431, code: 'headers_too_large' });
  t.deepEqual(upstream.tagged(tag), []);
});

test('a client sending its headers one byte at a time is cut off with 408', async (t) => {
  const head = `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n`;
  let timer: NodeJS.Timeout | undefined;
  const { text, closedAfterMs } = await raw((s) => {
    let i = 0;
    timer = setInterval(() => {
      if (s.destroyed || i >= head.length) return clearInterval(timer);
      s.write(head[i++]!);
    }, 100);
  });
  clearInterval(timer);
  t.deepEqual(statusAndCode(text), { status: 408, code: 'request_timeout' });
  t.true(closedAfterMs < 3000, `closed after ${closedAfterMs} ms`);
});

test('a request line Node cannot parse gets 400 in the OpenAI error shape', async (t) => {
  const { text } = await raw((s) => s.write('THIS IS NOT HTTP\r\n\r\n'));
  t.deepEqual(statusAndCode(text), { status: 400, code: 'invalid_request' });
});

test('conflicting Content-Length and Transfer-Encoding are refused and nothing is forwarded', async (t) => {
  const tag = newTag();
  const body = '{"model":"gpt-4o-mini"}';
  const { text } = await raw((s) =>
    s.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n${tagLine(tag)}Content-Type: application/json\r\n` +
        `Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`,
    ),
  );
  t.is(statusAndCode(text).status, 400);
  t.deepEqual(upstream.tagged(tag), []);
});

test('a body that stalls past request_timeout_ms gets 408 and still leaves its audit row', async (t) => {
  // A key of its own: its rows are this request's and no other test's.
  const stalled = gw.createKey('acme', 'stalled');
  const tag = newTag();
  const { text } = await raw((s) =>
    s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${stalled.key}\r\n${tagLine(tag)}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":`),
  );
  t.deepEqual(statusAndCode(text), { status: 408, code: 'request_timeout' });
  t.deepEqual(upstream.tagged(tag), []);
  // The row is committed once the gateway notices the connection is gone, a moment after the client sees it close.
  let rows: { allowed: number; reason: string }[] = [];
  for (const deadline = Date.now() + 1500; rows.length === 0 && Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    rows = sqliteJson<{ allowed: number; reason: string }>(gw.dbPath, `SELECT allowed, reason FROM usagelog WHERE api_key_id = '${stalled.id}'`);
  }
  t.is(rows.length, 1);
  t.is(rows[0]!.allowed, 0);
  t.regex(rows[0]!.reason, /^request_timeout:/);
});

test('an obs-folded header is refused and nothing is forwarded', async (t) => {
  const tag = newTag();
  const { text } = await raw((s) =>
    s.write(`GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n${tagLine(tag)}X-Folded: first\r\n second\r\n\r\n`),
  );
  t.is(statusAndCode(text).status, 400);
  t.deepEqual(upstream.tagged(tag), []);
});

test('chunk extensions used to smuggle or stall are refused and nothing is forwarded', async (t) => {
  const tag = newTag();
  const { text } = await raw((s) =>
    s.write(
      `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n${tagLine(tag)}Content-Type: application/json\r\n` +
        `Transfer-Encoding: chunked\r\n\r\n2;${'x'.repeat(20_000)}\r\n{}\r\n0\r\n\r\n`,
    ),
  );
  t.true(statusAndCode(text).status >= 400 && statusAndCode(text).status < 500, text.slice(0, 40));
  t.deepEqual(upstream.tagged(tag), []);
});

test('an absolute-form request target cannot choose where the gateway connects', async (t) => {
  const tag = newTag();
  const { text } = await raw((s) =>
    s.write(`GET http://169.254.169.254/v1/models HTTP/1.1\r\nHost: 169.254.169.254\r\nAuthorization: Bearer ${key}\r\n${tagLine(tag)}Connection: close\r\n\r\n`),
  );
  const { status } = statusAndCode(text);
  t.is(status, 404);
  t.deepEqual(upstream.tagged(tag), []);
});

test('forwarded responses say what the gateway itself added, and one log line per request carries ids and timings', async (t) => {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-request-id': 'log-line-probe' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
  });
  await res.arrayBuffer();
  const overhead = Number(res.headers.get('x-governance-overhead-ms'));
  t.true(Number.isFinite(overhead) && overhead >= 0, `x-governance-overhead-ms: ${res.headers.get('x-governance-overhead-ms')}`);
  const line = gw.logs.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.req_id === 'log-line-probe');
  t.like(line, { customer: 'acme', model: 'gpt-4o-mini', operation: 'chat.completions', decision: 'allow', status: 200, provider: 'openai' });
  for (const field of ['key_id', 'duration_ms', 'overhead_ms', 'upstream_ms']) t.not(line?.[field], undefined, field);
});
