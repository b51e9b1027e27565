import test from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { newTag } from '../helpers/mock-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { errorOf, logIdOf, outcomeOf, send, startStreamingUpstream, type StreamingUpstream } from './support.js';

// Issue 14, finding 7: streamed /v1/completions got no usage injection, streams of customers without
// token limits recorded NULL tokens, and `"stream":"true"` / `"stream":1` were taken as not streaming
// (no budget applied) while lenient providers stream. Every streamed chat.completions / completions
// request asks for usage and the client gets exactly what it would have without that; a non-boolean
// stream is 400.

const POLICY = policy().catchAll().customer('limited', { tokens_per_minute: 1_000_000 }).yaml();

let upstream: StreamingUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startStreamingUpstream();
  gw = await startHarness(upstream.url, { policy: POLICY });
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

/** What the provider itself answers to this exact body, asked directly. */
async function direct(path: string, body: string): Promise<string> {
  const res = await fetch(`${upstream.url}${path.slice(3)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return res.text();
}

const STREAMS: [string, string][] = [
  ['/v1/completions', JSON.stringify({ model: 'gpt-3.5-turbo-instruct', prompt: 'Say hi', stream: true, max_tokens: 5 })],
  ['/v1/chat/completions', JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] })],
];

for (const [customer, label] of [['limited', 'a token-limited customer'], ['unlimited', 'a customer without token limits']] as const) {
  for (const [path, body] of STREAMS) {
    test(`a streamed ${path} request of ${label} has its tokens recorded, and the client gets the provider's stream without the usage it did not ask for`, async (t) => {
      const { key } = gw.createKey(customer);
      const expected = await direct(path, body);
      t.false(expected.includes('usage'), 'the provider sends no usage unless asked');
      const tag = newTag();
      const res = await send(gw.url, key, { path, headers: { 'content-type': 'application/json', ...tag }, body });
      t.is(res.status, 200, res.body);
      t.is(res.body, expected, 'the client bytes differ from what the provider would have sent it');
      const [forwarded] = upstream.tagged(tag);
      if (!forwarded) return t.fail('the request never reached the provider');
      const sent = JSON.parse(forwarded.body.toString('utf8')) as { stream_options?: { include_usage?: unknown } };
      t.is(sent.stream_options?.include_usage, true, 'the gateway did not ask the provider for usage');
      const outcome = await outcomeOf(gw.dbPath, logIdOf(res));
      t.is(outcome?.status, 200);
      t.is(outcome?.total_tokens, 9, 'the outcome row has no tokens for the stream');
    });
  }
}

test('a client that asked for usage itself still gets its usage event', async (t) => {
  const { key } = gw.createKey('unlimited');
  const body = JSON.stringify({ model: 'gpt-3.5-turbo-instruct', prompt: 'x', stream: true, stream_options: { include_usage: true } });
  const expected = await direct('/v1/completions', body);
  const res = await send(gw.url, key, { path: '/v1/completions', headers: { 'content-type': 'application/json' }, body });
  t.is(res.body, expected);
  t.regex(res.body, /"usage":\{"prompt_tokens":6/);
  t.is((await outcomeOf(gw.dbPath, logIdOf(res)))?.total_tokens, 9);
});

for (const [path, base] of [
  ['/v1/chat/completions', { model: 'gpt-4o-mini', messages: [] }],
  ['/v1/completions', { model: 'gpt-3.5-turbo-instruct', prompt: 'x' }],
] as const) {
  for (const stream of ['true', 1] as const) {
    test(`${path} with "stream":${JSON.stringify(stream)} is refused with 400 (param stream) and never forwarded`, async (t) => {
      const { key } = gw.createKey('limited');
      const tag = newTag();
      const res = await send(gw.url, key, { path, headers: { 'content-type': 'application/json', ...tag }, body: JSON.stringify({ ...base, stream }) });
      t.is(res.status, 400, res.body);
      t.is(errorOf(res)?.code, 'invalid_request');
      t.is(errorOf(res)?.param, 'stream');
      t.deepEqual(upstream.tagged(tag), []);
    });
  }
}
