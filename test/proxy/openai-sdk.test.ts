import test from 'ava';
import OpenAI from 'openai';
import { newTag, startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { startHarness, UPSTREAM_SECRET, type Harness } from '../helpers/gateway-harness.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { decisionRow, errorBody, logIdOf, outcomeRow, waitFor } from './support.js';

let upstream: MockUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url);
});

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

test('chat completion through the official SDK is forwarded with the provider key', async (t) => {
  const { key } = gw.createKey('acme');
  const client = gw.sdk(key);
  const tag = newTag();
  const { data: completion, response } = await client.chat.completions
    .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] }, { headers: tag })
    .withResponse();
  t.is(completion.choices[0]?.message.content, 'mock reply');
  t.is(response.headers.get('x-governance-decision'), 'allow');
  const logId = response.headers.get('x-governance-log-id');
  t.truthy(logId);
  t.truthy(response.headers.get('x-request-id'));

  t.deepEqual(upstream.tagged(tag).map((r) => [r.path, r.headers.authorization]), [['/v1/chat/completions', `Bearer ${UPSTREAM_SECRET}`]]);
  const rows = sqliteJson(gw.dbPath, `SELECT customer_id, model, operation, allowed FROM usagelog WHERE id = '${logId}'`);
  t.deepEqual(rows, [{ customer_id: 'acme', model: 'gpt-4o-mini', operation: 'chat.completions', allowed: 1 }]);
});

test('blocked request raises PermissionDeniedError with the reason and is not retried', async (t) => {
  const { key } = gw.createKey('acme');
  const client = gw.sdk(key);
  const tag = newTag();
  const err = await t.throwsAsync(
    client.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'X-Governance-Metadata': JSON.stringify({ data_classification: 'restricted' }), ...tag } },
    ),
    { instanceOf: OpenAI.PermissionDeniedError },
  );
  t.is(err?.status, 403);
  t.is(err?.code, 'policy_blocked');
  t.regex(err?.message ?? '', /rule restricted-data: Restricted data may not be sent to any model/);
  t.deepEqual(upstream.tagged(tag), [], 'nothing was forwarded');
});

// Serial: the stream shape is the shared upstream's setting, which every other chat completion would get.
test.serial('streamed chat completion reaches the client chunk by chunk, in order', async (t) => {
  const { key } = gw.createKey('acme');
  const client = gw.sdk(key);
  // Five content chunks 150 ms apart: a buffering gateway would hand them over all at once.
  upstream.setStream(5, 150);
  try {
    const { data: stream, response } = await client.chat.completions
      .create({
        model: 'gpt-4o-mini',
        messages: [{ role: 'user', content: 'count' }],
        stream: true,
        stream_options: { include_usage: true },
      })
      .withResponse();
    t.is(response.headers.get('x-governance-decision'), 'allow');
    const logId = logIdOf(response.headers);

    const contents: string[] = [];
    const arrivals: number[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      const choice = chunk.choices[0];
      if (choice?.delta.content) {
        contents.push(choice.delta.content);
        arrivals.push(Date.now());
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
    }
    t.deepEqual(contents, ['tok0 ', 'tok1 ', 'tok2 ', 'tok3 ', 'tok4 ']);
    t.is(finish, 'stop');
    // The provider spends 600 ms between the first and last content chunk; unbuffered relaying keeps them apart.
    const spread = arrivals.at(-1)! - arrivals[0]!;
    t.true(spread >= 300, `first and last chunk arrived only ${spread} ms apart: the stream was buffered`);

    // The usage in the stream's last chunk is what the outcome row records.
    const outcome = await waitFor(() => outcomeRow(gw.dbPath, logId), 3000);
    t.like(outcome, { status: 200, error: null, completion_tokens: 5 });
  } finally {
    upstream.reset();
  }
});

test('embeddings are forwarded and answered', async (t) => {
  // The mock answers floats, so the SDK must not ask for (and then try to decode) base64.
  const { key } = gw.createKey('acme');
  const client = gw.sdk(key);
  const tag = newTag();
  const { data: result, response } = await client.embeddings
    .create({ model: 'text-embedding-3-small', input: ['one', 'two'], encoding_format: 'float' }, { headers: tag })
    .withResponse();
  t.is(result.data.length, 2);
  t.deepEqual(result.data[0]?.embedding, [0.1, 0.2, 0.3]);
  t.deepEqual(upstream.tagged(tag).map((r) => [r.method, r.path, r.headers.authorization]), [['POST', '/v1/embeddings', `Bearer ${UPSTREAM_SECRET}`]]);
  const row = decisionRow(gw.dbPath, logIdOf(response.headers));
  t.like(row, { model: 'text-embedding-3-small', operation: 'embeddings', allowed: 1 });
});

test('the models list, which names no model, is forwarded to the provider', async (t) => {
  const { key } = gw.createKey('acme');
  const client = gw.sdk(key);
  const tag = newTag();
  const page = await client.models.list({ headers: tag });
  t.deepEqual(page.data.map((m) => m.id), ['gpt-4o-mini']);
  t.deepEqual(upstream.tagged(tag).map((r) => [r.method, r.path, r.headers.authorization]), [['GET', '/v1/models', `Bearer ${UPSTREAM_SECRET}`]]);
});

test('a revoked key is refused with 401 invalid_api_key within a second', async (t) => {
  const { key, id } = gw.createKey('acme');
  const client = gw.sdk(key);
  await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'before' }] });

  gw.revoke(id);
  let err: unknown;
  const deadline = Date.now() + 1500;
  while (Date.now() < deadline) {
    try {
      await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'after' }] });
    } catch (e) {
      err = e;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.true(err instanceof OpenAI.AuthenticationError, `revoked key still accepted after 1.5 s (${String(err)})`);
  const authErr = err as InstanceType<typeof OpenAI.AuthenticationError>;
  t.is(authErr.status, 401);
  t.is(authErr.code, 'invalid_api_key');

  // Once refused, always refused: nothing more reaches the provider for this key.
  const tag = newTag();
  await t.throwsAsync(
    client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'again' }] }, { headers: tag }),
    { instanceOf: OpenAI.AuthenticationError },
  );
  t.deepEqual(upstream.tagged(tag), []);
});

test('a request without a key is refused with 401 invalid_api_key', async (t) => {
  const tag = newTag();
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...tag },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
  });
  t.is(res.status, 401);
  const body = await errorBody(res);
  t.is(body.error.code, 'invalid_api_key');
  t.truthy(res.headers.get('x-request-id'));
  t.deepEqual(upstream.tagged(tag), []);
});

test('a made-up key is refused with 401 invalid_api_key through the SDK', async (t) => {
  const tag = newTag();
  const client = gw.sdk('gg_not-a-real-key');
  const err = await t.throwsAsync(
    client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }, { headers: tag }),
    { instanceOf: OpenAI.AuthenticationError },
  );
  t.is(err?.code, 'invalid_api_key');
  t.deepEqual(upstream.tagged(tag), []);
});

test('the key is accepted in an api-key header and is not forwarded', async (t) => {
  const { key } = gw.createKey('acme');
  const tag = newTag();
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'api-key': key, ...tag },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
  });
  t.is(res.status, 200);
  const completion = (await res.json()) as { choices: { message: { content: string } }[] };
  t.is(completion.choices[0]?.message.content, 'mock reply');
  const [seen] = upstream.tagged(tag);
  if (!seen) return t.fail('the request never reached the provider');
  t.is(seen.headers['api-key'], undefined);
  t.is(seen.headers.authorization, `Bearer ${UPSTREAM_SECRET}`);
  t.false(JSON.stringify(seen.headers).includes(key), 'the client key reached the provider');
});
