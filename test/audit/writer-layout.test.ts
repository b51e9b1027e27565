import { spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { openDatabase } from '../../gateway/store/connection.js';
import { buildGatewayForChildren, startServe } from '../helpers/cli.js';
import { FIXTURE_POLICY, makeGatewayDir, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';
import { startMockUpstream, type MockUpstream } from '../helpers/mock-upstream.js';
import { seedKeys } from '../helpers/seed-keys.js';

/**
 * Issue 18: the audit writer has its own thread when the process may use a
 * second core, and stays on the event loop when confined to one (taskset, a
 * container's cpuset), unless `audit.writer_thread` says otherwise. Either way a forwarded request has its row, a refused
 * one too, and a stop commits what is queued, `gateway.stopped` last.
 */

const hasTaskset = spawnSync('taskset', ['-c', '0', 'true']).status === 0;
let upstream: MockUpstream;
let build: ReturnType<typeof buildGatewayForChildren> | undefined;

test.before(async () => {
  build = buildGatewayForChildren();
  upstream = await startMockUpstream();
});

test.after.always(async () => {
  await upstream?.close();
  build?.remove();
});

async function serveOnce(prefix: string[], writerThread?: 'on' | 'off'): Promise<{ writer: string; statuses: number[]; decisions: number; outcomes: number; lastEvent: string }> {
  const dir = makeGatewayDir();
  try {
    writeGatewayYaml(dir, upstream.url, writerThread ? { audit: { writer_thread: writerThread } } : {});
    writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
    const key = seedKeys(dir, ['acme'])[0]!.key;
    const serve = await startServe({ cwd: dir, entry: build!.entry, prefix, env: { OPENAI_API_KEY: UPSTREAM_SECRET, SENTRY_DSN: '' } });
    const statuses: number[] = [];
    try {
      for (const metadata of [{}, { data_classification: 'restricted' }]) {
        const res = await fetch(`${serve.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'x-governance-metadata': JSON.stringify(metadata) },
          body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'layout' }] }),
        });
        await res.arrayBuffer();
        statuses.push(res.status);
      }
    } finally {
      const code = await serve.stop();
      if (code !== 0) throw new Error(`govgate serve exited with ${code}:\n${serve.stderr()}`);
    }
    const line = serve.stdout().split('\n').find((l) => l.includes('"audit writer started"'));
    const writer = line ? (JSON.parse(line) as { audit_writer: string }).audit_writer : 'no log line';
    const db = openDatabase(path.join(dir, 'data/audit.db'), { synchronous: 'NORMAL', readonly: true });
    try {
      const count = (table: string) => db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
      const lastEvent = db.prepare('SELECT kind FROM audit_event ORDER BY rowid DESC LIMIT 1').pluck().get() as string;
      return { writer, statuses, decisions: count('usagelog'), outcomes: count('usagelog_outcome'), lastEvent };
    } finally {
      db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Layout {
  readonly title: string;
  readonly prefix: string[];
  readonly setting?: 'on' | 'off';
  readonly writer: 'thread' | 'event loop';
}

const ONE_CORE = ['taskset', '-c', '0'];
const LAYOUTS: readonly Layout[] = [
  { title: 'confined to one core, the writer stays on the event loop', prefix: ONE_CORE, writer: 'event loop' },
  { title: 'with two cores, the writer has its own thread', prefix: [], writer: 'thread' },
  { title: 'audit.writer_thread: off keeps the writer on the event loop on two cores', prefix: [], setting: 'off', writer: 'event loop' },
  { title: 'audit.writer_thread: on gives the writer its thread even on one core', prefix: ONE_CORE, setting: 'on', writer: 'thread' },
];

for (const layout of LAYOUTS) {
  test(`${layout.title}; every row is written`, async (t) => {
    if (layout.prefix.length > 0 && !hasTaskset) return t.pass('taskset is not available here');
    if (layout.prefix.length === 0 && availableParallelism() < 2) return t.pass('this machine has one core');
    const run = await serveOnce(layout.prefix, layout.setting);
    t.is(run.writer, layout.writer);
    t.deepEqual(run.statuses, [200, 403], 'one request forwarded, one refused by the policy');
    t.is(run.decisions, 2);
    t.is(run.outcomes, 1, 'the forwarded request\'s outcome was committed at the stop');
    t.is(run.lastEvent, 'gateway.stopped');
  });
}
