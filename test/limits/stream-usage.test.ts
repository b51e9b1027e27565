import test from 'ava';
import { newTag, startMockUpstream, type MockUpstream, type Tag } from '../helpers/mock-upstream.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { logIdOf, outcomeRow, waitFor } from '../proxy/support.js';
import { UsageEventFilter, withUsageRequested } from '../../gateway/proxy/stream-usage.js';
import { policy } from '../helpers/policy-builder.js';
import { chat } from './support.js';

let upstream: MockUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url, { policy: policy().catchAll().customer('limited', { tokens_per_minute: 100_000 }).yaml() });
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

const STREAM_BODY = '{"model":"gpt-4o-mini","stream":true,"seed":12345678901234567890,"messages":[{"role":"user","content":"hi"}]}';

/** The stream as a client reads it, with the mock's timestamps evened out. */
async function streamText(key: string, body: string, tag: Tag = newTag()): Promise<{ text: string; res: Response }> {
  const res = await chat(gw.url, key, body, tag);
  return { text: (await res.text()).replace(/"created":\d+/g, '"created":0'), res };
}

/** What the client would have read from the provider itself, for the same body: the reference for what it reads through the gateway. */
async function providerText(body: string): Promise<string> {
  const res = await fetch(`${upstream.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
  return (await res.text()).replace(/"created":\d+/g, '"created":0');
}

for (const customer of ['limited', 'unlimited']) {
  test(`for a ${customer} customer the gateway asks for stream usage and the client sees exactly what it would have`, async (t) => {
    const { key } = gw.createKey(customer);
    const asIs = await providerText(STREAM_BODY);
    const tag = newTag();
    const governed = await streamText(key, STREAM_BODY, tag);
    const sent = upstream.tagged(tag)[0]?.body.toString();
    t.is(sent, `{"stream_options":{"include_usage":true},${STREAM_BODY.slice(1)}`, 'only include_usage is added; the rest (a large seed too) is unchanged');
    t.is(governed.text, asIs, 'the usage event and the "usage":null fields are taken out');
    t.false(governed.text.includes('usage'));
    t.true(governed.text.endsWith('data: [DONE]\n\n'));

    const outcome = await waitFor(() => outcomeRow(gw.dbPath, logIdOf(governed.res.headers)), 3000);
    t.is(outcome?.total_tokens, 14, 'the tokens are counted from the usage the gateway asked for');
  });
}

test('a client that asked for usage gets its usage event, and its body is forwarded unchanged', async (t) => {
  const { key } = gw.createKey('limited');
  const tag = newTag();
  const body = '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}';
  const { text } = await streamText(key, body, tag);
  t.is(upstream.tagged(tag)[0]?.body.toString(), body);
  t.regex(text, /"choices":\[\],"usage":\{"prompt_tokens":11,"completion_tokens":3,"total_tokens":14\}/);
  t.regex(text, /"usage":null/);
});

test('include_usage: false is overridden upstream and the client still sees no usage', async (t) => {
  const { key } = gw.createKey('limited');
  const body = '{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false},"messages":[]}';
  const asIs = await providerText(body);
  const tag = newTag();
  const governed = await streamText(key, body, tag);
  const sent = JSON.parse(upstream.tagged(tag)[0]?.body.toString() ?? 'null') as { stream_options: unknown } | null;
  t.deepEqual(sent?.stream_options, { include_usage: true });
  t.is(governed.text, asIs);
});

test('the official SDK streams through the rewrite without a usage chunk', async (t) => {
  const { key } = gw.createKey('limited');
  const client = gw.sdk(key);
  const stream = await client.chat.completions.create({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'x' }] });
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  t.is(chunks.length, 4);
  t.true(chunks.every((c) => c.choices.length === 1 && !('usage' in c)));
});

test('the event filter gives the same bytes however the stream is split', (t) => {
  const events = [
    'data: {"id":"a","choices":[{"index":0,"delta":{"content":"x"}}],"usage":null}\n\n',
    'data: {"id":"a","choices":[{"index":0,"delta":{}}],"usage":null}\r\n\r\n',
    ': keep-alive comment\n\n',
    'data: {"id":"a","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}\n\n',
    'data: [DONE]\n\n',
  ];
  const expected = [
    'data: {"id":"a","choices":[{"index":0,"delta":{"content":"x"}}]}\n\n',
    'data: {"id":"a","choices":[{"index":0,"delta":{}}]}\r\n\r\n',
    ': keep-alive comment\n\n',
    'data: [DONE]\n\n',
  ].join('');
  const whole = Buffer.from(events.join(''));
  for (let cut = 0; cut <= whole.length; cut++) {
    const filter = new UsageEventFilter();
    const out = Buffer.concat([filter.push(whole.subarray(0, cut)), filter.push(whole.subarray(cut)), filter.end()]);
    if (out.toString() !== expected) {
      t.fail(`split at ${cut}: ${out.toString()}`);
      return;
    }
  }
  t.pass();
});

test('content that merely mentions usage is left alone', (t) => {
  const event = 'data: {"choices":[{"index":0,"delta":{"content":",\\"usage\\":null"}}]}\n\n';
  const filter = new UsageEventFilter();
  t.is(Buffer.concat([filter.push(Buffer.from(event)), filter.end()]).toString(), event);
});

test('withUsageRequested leaves a body that already asks for usage alone', (t) => {
  t.is(usageRequested('{"stream":true,"stream_options":{"include_usage":true}}'), null);
  t.is(usageRequested('{"stream":true,"stream_options":{"include_usage":false,"x":1}}')?.toString(), '{"stream":true,"stream_options":{"include_usage":true,"x":1}}');
});

function usageRequested(body: string): Buffer | null {
  return withUsageRequested(Buffer.from(body), JSON.parse(body) as Record<string, unknown>);
}
