import test, { type ExecutionContext } from 'ava';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';
import { rawRequest, waitFor, type OpenAIErrorShape, type RawResponse } from '../proxy/support.js';

// /v1/check forwards nothing, so the provider never has to answer.
const UNUSED_UPSTREAM = 'http://127.0.0.1:9/v1';
const MAX_BODY = 1024;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const KEY_ID = /^[A-Za-z0-9_]+$/;

let gw: Harness;

test.before(async () => {
  gw = await startHarness(UNUSED_UPSTREAM, { maxBodyBytes: MAX_BODY });
});

test.after.always(async () => {
  await gw?.close();
});

function check(key: string, body: string): Promise<RawResponse> {
  return rawRequest(gw.url, {
    method: 'POST',
    path: '/v1/check',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
    body,
  });
}

interface AuditRowView {
  id: string;
  api_key_id: string;
  allowed: number;
  risk_score: number;
  kind: string | null;
}

function rowsOfKey(keyId: string): AuditRowView[] {
  if (!KEY_ID.test(keyId)) throw new Error(`unexpected key id ${keyId}`);
  return sqliteJson<AuditRowView>(
    gw.dbPath,
    `SELECT id, api_key_id, allowed, risk_score, json_extract(meta, '$.kind') AS kind FROM usagelog WHERE api_key_id = '${keyId}'`,
  );
}

/**
 * Every authenticated check leaves exactly one row, refused ones too, and the
 * log id header names it. Rows are committed before the answer; the short poll
 * only absorbs the sqlite3 CLI's view of the WAL.
 */
async function assertRefusalRow(t: ExecutionContext, res: RawResponse, keyId: string): Promise<void> {
  t.is(res.headers['x-governance-decision'], 'block');
  t.is(res.headers['x-governance-risk-score'], '0');
  const logId = res.headers['x-governance-log-id'];
  t.regex(String(logId), UUID, 'x-governance-log-id names the refusal row');
  const rows = (await waitFor(() => {
    const found = rowsOfKey(keyId);
    return found.length > 0 ? found : undefined;
  }, 1500)) ?? [];
  t.is(rows.length, 1, 'exactly one audit row for the refused check');
  const row = rows[0];
  if (!row) return;
  t.is(row.id, String(logId));
  t.is(row.allowed, 0);
  t.is(row.risk_score, 0);
  t.is(row.kind, 'check');
}

function codeOf(res: RawResponse): string {
  return (JSON.parse(res.body) as OpenAIErrorShape).error.code;
}

test('an answered check has its row with kind check (control for the refusals below)', async (t) => {
  const { key, id } = gw.createKey('acme', 'check-ok');
  const res = await check(key, JSON.stringify({ model: 'gpt-4o-mini', operation: 'chat.completions' }));
  t.is(res.status, 200, res.body);
  const logId = (JSON.parse(res.body) as { log_id: string }).log_id;
  t.is(res.headers['x-governance-log-id'], logId);
  const rows = rowsOfKey(id);
  t.deepEqual(rows.map((r) => [r.id, r.kind]), [[logId, 'check']]);
});

test('a check with malformed JSON gets 400 and leaves a refused row named by x-governance-log-id', async (t) => {
  const { key, id } = gw.createKey('acme', 'check-bad-json');
  const res = await check(key, '{"model":"gpt-4o-mini","operation":');
  t.is(res.status, 400, res.body);
  t.is(codeOf(res), 'invalid_request');
  await assertRefusalRow(t, res, id);
});

test('a check body over max_body_bytes gets 413 and leaves a refused row', async (t) => {
  const { key, id } = gw.createKey('acme', 'check-too-large');
  const body = JSON.stringify({ model: 'gpt-4o-mini', operation: 'chat.completions', metadata: { note: 'x'.repeat(2048) } });
  t.true(Buffer.byteLength(body) > MAX_BODY);
  const res = await check(key, body);
  t.is(res.status, 413, res.body);
  t.is(codeOf(res), 'request_too_large');
  await assertRefusalRow(t, res, id);
});

test('a check naming a model over 256 characters gets 400 and leaves a refused row', async (t) => {
  const { key, id } = gw.createKey('acme', 'check-long-model');
  const res = await check(key, JSON.stringify({ model: `gpt-${'x'.repeat(300)}`, operation: 'chat.completions' }));
  t.is(res.status, 400, res.body);
  t.is(codeOf(res), 'invalid_request');
  await assertRefusalRow(t, res, id);
});
