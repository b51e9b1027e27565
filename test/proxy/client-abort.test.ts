import test from 'ava';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { logIdOf, outcomeRow, waitFor } from './support.js';

let upstream: MockUpstream;
let gw: Harness;

test.before(async () => {
  upstream = await startMockUpstream();
  gw = await startHarness(upstream.url);
});

test.after.always(async () => {
  // The mock goes first: if an upstream request was wrongly left running, closing the gateway would wait on it.
  await upstream?.close();
  await gw?.close();
});

// Both tests are serial: each sets the one upstream's pace and counts the requests aborted on it.
test.afterEach.always(() => upstream.reset());

test.serial('a client that leaves mid-stream aborts the upstream request and is recorded as client_abort', async (t) => {
  const { key } = gw.createKey('abort-stream');
  // Five seconds of stream: only an abort, not the natural end, can close it within the wait below.
  upstream.setStream(50, 100);
  const controller = new AbortController();
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'long story' }] }),
    signal: controller.signal,
  });
  t.is(res.status, 200);
  const logId = logIdOf(res.headers);
  const reader = res.body!.getReader();
  const first = await reader.read();
  t.false(first.done);
  t.regex(Buffer.from(first.value!).toString('utf8'), /^data: /);
  controller.abort();
  await reader.read().catch(() => undefined);

  const aborted = await waitFor(() => (upstream.aborted >= 1 ? upstream.aborted : undefined), 2000);
  t.is(aborted, 1, 'the provider kept streaming to a client that was gone');

  const outcome = await waitFor(() => outcomeRow(gw.dbPath, logId), 2000);
  t.is(outcome?.error, 'client_abort');
});

test.serial('a client that leaves before the provider answers aborts the upstream request', async (t) => {
  const { key } = gw.createKey('abort-wait');
  upstream.setDelay(3000);
  const controller = new AbortController();
  const pending = fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }),
    signal: controller.signal,
  });
  // Abort only once the request is on the provider's side, so it is the forwarded request that must end.
  const arrived = await waitFor(() => (upstream.received.length > 0 ? true : undefined), 2000);
  t.true(arrived);
  controller.abort();
  // fetch rejects with a DOMException, which ava's throwsAsync does not count as an error.
  t.is(await pending.then(() => 'answered', () => 'aborted'), 'aborted');

  const aborted = await waitFor(() => (upstream.aborted >= 1 ? upstream.aborted : undefined), 2000);
  t.is(aborted, 1, 'the upstream request outlived its client');

  const outcome = await waitFor(
    () => sqliteJson<{ error: string | null }>(
      gw.dbPath,
      `SELECT o.error FROM usagelog_outcome o JOIN usagelog u ON u.id = o.log_id WHERE u.customer_id = 'abort-wait'`,
    )[0],
    2000,
  );
  t.is(outcome?.error, 'client_abort');
});
