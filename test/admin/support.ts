import OpenAI from 'openai';
import { Agent, fetch as undiciFetch, type RequestInit, type Response } from 'undici';
import type { Harness } from '../helpers/gateway-harness.js';
import { policy } from '../helpers/policy-builder.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';

/** At least 32 characters: the gateway refuses to start with a shorter GOVGATE_ADMIN_TOKEN. */
export const ADMIN_TOKEN = 'admin-test-token-0123456789abcdef';

export type Fetch = (url: string, init?: RequestInit) => Promise<Response>;

const agents: Agent[] = [];

/**
 * fetch from a loopback address of its own (Linux routes all of 127.0.0.0/8 to
 * lo), so the wrong tokens one test sends count against no other test's
 * address: the admin login throttle counts per client address.
 */
export function fetchFrom(localAddress: string): Fetch {
  const dispatcher = new Agent({ localAddress });
  agents.push(dispatcher);
  return (url, init = {}) => undiciFetch(url, { ...init, dispatcher });
}

/** Closes the connections every fetchFrom opened, so the test process can exit. */
export async function closeFetchers(): Promise<void> {
  await Promise.all(agents.splice(0).map((agent) => agent.close()));
}

/** A policy whose rules, allow-lists and limits each block something in `seedDecisions`. */
export const DASHBOARD = policy()
  .catchAll()
  .customer('acme', { models: ['gpt-4o-mini', 'text-embedding-3-*'], operations: ['chat.completions', 'embeddings'] })
  .customer('initech', { models: ['*'], operations: ['*'], max_tokens: 100, requests_per_minute: 2 })
  .rule(
    { id: 'pii-to-external', when: { 'metadata.contains_pii': true }, risk: 90 },
    { id: 'restricted-data', when: { 'metadata.data_classification': ['restricted', 'secret'] }, action: 'block', reason: 'Restricted data; may not be sent: anywhere' },
    { id: 'internal-data', when: { 'metadata.data_classification': 'internal' }, risk: 40 },
  );
export const DASHBOARD_POLICY = DASHBOARD.yaml();

/** A model name a client controls, shaped like markup (without spaces, as model names are): the page must show it as text. */
export const HOSTILE_MODEL = '<img/src="x"/onerror="document.body.dataset.pwned=1">';

/** Resolves when `request` is refused with the SDK error `expected`, and fails otherwise. */
async function refusedWith(request: Promise<unknown>, expected: abstract new (...args: never[]) => Error): Promise<void> {
  await request.then(
    () => {
      throw new Error('expected a refusal');
    },
    (err: unknown) => {
      if (!(err instanceof expected)) throw err;
    },
  );
}

async function check(gw: Harness, key: string, model: string, metadata: Record<string, unknown>): Promise<void> {
  const res = await fetch(`${gw.url}/v1/check`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, operation: 'chat.completions', metadata }),
  });
  if (res.status !== 200) throw new Error(`/v1/check answered ${res.status}`);
  await res.arrayBuffer();
}

/**
 * Real traffic through the gateway: allowed and blocked chat completions and
 * embeddings through the official SDK, and decisions through POST /v1/check.
 */
export async function seedDecisions(gw: Harness): Promise<void> {
  const acme = gw.sdk(gw.createKey('acme', 'dashboard').key);
  for (let i = 0; i < 3; i++) {
    await acme.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
  }
  await acme.embeddings.create({ model: 'text-embedding-3-small', input: 'hello' });
  await refusedWith(
    acme.chat.completions.create(
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] },
      { headers: { 'X-Governance-Metadata': JSON.stringify({ data_classification: 'restricted' }) } },
    ),
    OpenAI.PermissionDeniedError,
  );
  await refusedWith(acme.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }), OpenAI.PermissionDeniedError);
  // Two requests a minute: the first is forwarded, the second is over the max_tokens cap (and still counted), the third is over the rate limit.
  const initech = gw.sdk(gw.createKey('initech', 'dashboard').key);
  await initech.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hello' }] });
  await refusedWith(initech.chat.completions.create({ model: 'gpt-4o-mini', max_tokens: 500, messages: [{ role: 'user', content: 'x' }] }), OpenAI.PermissionDeniedError);
  await refusedWith(initech.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }), OpenAI.RateLimitError);
  const globex = gw.createKey('globex', 'dashboard').key;
  await check(gw, globex, 'gpt-4o', { data_classification: 'internal' });
  await check(gw, globex, 'gpt-4o', { data_classification: 'internal' });
  await check(gw, globex, 'gpt-4o', { contains_pii: true });
  await check(gw, globex, 'gpt-4o', { data_classification: 'secret' });
  await check(gw, globex, HOSTILE_MODEL, {});
}

/** The causes seedDecisions blocks for, by what the dashboard calls them: most blocks first, then by name. */
export const EXPECTED_BLOCKING = [
  { cause: 'rule restricted-data', count: 2 },
  { cause: 'limit max_tokens', count: 1 },
  { cause: 'limit requests_per_minute', count: 1 },
  { cause: 'model not allowed for customer', count: 1 },
  { cause: 'risk_score over block_threshold', count: 1 },
];

export interface Expected {
  /** 'HH:00' → counts, for every hour with rows. */
  hourly: Map<string, { allowed: number; blocked: number }>;
  /** 'MM-DD' → counts. */
  daily: Map<string, { allowed: number; blocked: number }>;
  risk: number[];
  customers: { customer: string; model: string | null; requests: number; blocked: number; avg_risk: number; tokens: number | null }[];
  latestIds: string[];
  total: number;
  /** The newest 20 control events, newest first. */
  changes: { created_at: string; kind: string; actor: string }[];
}

/** What the dashboard must show, computed independently by the sqlite3 CLI from the audit file. */
export function expectedFromDb(dbPath: string): Expected {
  const counts = (bucket: string) =>
    new Map(
      sqliteJson<{ k: string; allowed: number; blocked: number }>(
        dbPath,
        `SELECT ${bucket} AS k, sum(allowed) AS allowed, sum(allowed = 0) AS blocked FROM usagelog
          WHERE created_at >= strftime('%Y-%m-%d %H:00:00', 'now', '-23 hours') GROUP BY k`,
      ).map((r) => [r.k, { allowed: r.allowed, blocked: r.blocked }]),
    );
  const risk = new Array<number>(10).fill(0);
  for (const r of sqliteJson<{ b: number; n: number }>(dbPath, 'SELECT min(CAST(risk_score / 10 AS INTEGER), 9) AS b, count(*) AS n FROM usagelog GROUP BY b')) {
    risk[r.b] = r.n;
  }
  const customers = sqliteJson<Expected['customers'][number]>(
    dbPath,
    `SELECT u.customer_id AS customer, u.model, count(*) AS requests, sum(u.allowed = 0) AS blocked,
            round(avg(u.risk_score), 2) AS avg_risk, sum(o.total_tokens) AS tokens
       FROM usagelog u LEFT JOIN usagelog_outcome o ON o.log_id = u.id
      GROUP BY u.customer_id, u.model ORDER BY requests DESC, customer`,
  );
  const latestIds = sqliteJson<{ id: string }>(dbPath, 'SELECT id FROM usagelog ORDER BY created_at DESC LIMIT 100').map((r) => r.id);
  const [{ n: total }] = sqliteJson<{ n: number }>(dbPath, 'SELECT count(*) AS n FROM usagelog') as [{ n: number }];
  const changes = sqliteJson<Expected['changes'][number]>(dbPath, 'SELECT created_at, kind, actor FROM audit_event ORDER BY rowid DESC LIMIT 20');
  return { hourly: counts("strftime('%H:00', created_at)"), daily: counts("strftime('%m-%d', created_at)"), risk, customers, latestIds, total, changes };
}

/** Sorted the same way for comparison: the dashboard breaks ties by customer only. */
export function byGroup<T extends { customer: string; model: string | null }>(rows: T[]): T[] {
  return [...rows].sort((a, b) => a.customer.localeCompare(b.customer) || String(a.model).localeCompare(String(b.model)));
}
