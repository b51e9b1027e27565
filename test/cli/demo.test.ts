import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import test from 'ava';
import { cliArgs } from '../helpers/cli.js';
import { sqliteRaw } from '../helpers/sqlite-cli.js';
import { lines, poll, runCliAsync } from './support.js';

// The demo must run from anywhere, without a checkout's config/: start it in an empty directory.
const cwd = mkdtempSync(path.join(tmpdir(), 'govgate-demo-cwd-'));
test.after.always(() => rmSync(cwd, { recursive: true, force: true }));

/** A printed `curl … URL -H 'K: V'… -d 'BODY'` line, taken apart so fetch can send exactly what it says. */
function parseCurl(line: string): { url: string; headers: Record<string, string>; body: string } {
  const url = /\s(http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions)\s/.exec(line)?.[1];
  const body = /-d '([^']*)'/.exec(line)?.[1];
  if (url === undefined || body === undefined) throw new Error(`not a curl command with a URL and -d: ${line}`);
  const headers: Record<string, string> = {};
  for (const m of line.matchAll(/-H '([^:']+): ([^']*)'/g)) headers[m[1]!] = m[2]!;
  return { url, headers, body };
}

test('govgate demo serves a fake provider behind a gateway, prints three working commands and cleans up on SIGTERM', async (t) => {
  const child = spawn(process.execPath, cliArgs(['demo', '--port', '0']), {
    cwd,
    env: { ...process.env, PORT: '', GOVGATE_CONFIG: undefined, GOVGATE_ADMIN_TOKEN: undefined },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  try {
    const ready = await poll(() => (out.includes('Press Ctrl+C') ? true : child.exitCode !== null ? false : undefined), 60_000);
    t.true(ready, `demo did not start:\n${out}\n${err}`);
    if (!ready) return;

    const printed = lines(out);
    const curls = printed.filter((l) => l.trim().startsWith('curl '));
    const sqlite = printed.find((l) => l.trim().startsWith('sqlite3 '));
    t.is(curls.length, 2, out);
    t.truthy(sqlite, out);
    const workDir = /^Working directory: (\S+)/m.exec(out)?.[1];
    t.truthy(workDir, out);
    t.true(existsSync(workDir!), 'the demo works in a temporary directory of its own');

    const allowed = parseCurl(curls[0]!);
    const blocked = parseCurl(curls[1]!);
    t.regex(allowed.headers.Authorization ?? '', /^Bearer gg_[0-9A-Za-z]{38}$/);
    t.deepEqual(JSON.parse(blocked.headers['X-Governance-Metadata'] ?? 'null'), { contains_pii: true });

    const ok = await fetch(allowed.url, { method: 'POST', headers: allowed.headers, body: allowed.body });
    t.is(ok.status, 200);
    const completion = (await ok.json()) as { choices: { message: { content: string } }[] };
    t.regex(completion.choices[0]!.message.content, /demo provider/);

    const refused = await fetch(blocked.url, { method: 'POST', headers: blocked.headers, body: blocked.body });
    t.is(refused.status, 403);
    const refusal = (await refused.json()) as { error: { code: string } };
    t.is(refusal.error.code, 'policy_blocked');

    // The fake provider answers the other routes the walk-through may try: streaming, embeddings and models.
    const base = allowed.url.replace(/\/chat\/completions$/, '');
    const auth = { Authorization: allowed.headers.Authorization!, 'Content-Type': 'application/json' };
    const stream = await fetch(`${base}/chat/completions`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, messages: [{ role: 'user', content: 'hi' }] }) });
    t.is(stream.status, 200);
    const events = await stream.text();
    t.regex(events, /chat\.completion\.chunk/);
    t.regex(events, /data: \[DONE\]/);
    const embeddings = await fetch(`${base}/embeddings`, { method: 'POST', headers: auth, body: JSON.stringify({ model: 'text-embedding-3-small', input: ['a', 'b'] }) });
    t.is(embeddings.status, 200);
    t.is(((await embeddings.json()) as { data: unknown[] }).data.length, 2);
    const models = await fetch(`${base}/models`, { headers: auth });
    t.is(models.status, 200);

    // Run the printed sqlite3 command as printed: PATH then the quoted SQL.
    const m = /^\s*sqlite3 (\S+) "([^"]+)"$/.exec(sqlite!);
    t.truthy(m, sqlite);
    const rows = await poll(() => {
      const r = sqliteRaw(m![1]!, m![2]!);
      const got = lines(r.stdout);
      return r.status === 0 && got.length >= 2 ? got : undefined;
    }, 10_000);
    t.truthy(rows, 'the audit log has the two chat completions');
    t.is(rows?.[0], 'gpt-4o-mini|1|allowed');
    t.regex(rows?.[1] ?? '', /^gpt-4o-mini\|0\|rule no-pii: /);

    child.kill('SIGTERM');
    const [code] = await exited;
    t.is(code, 0, err);
    t.false(existsSync(workDir!), 'the temporary directory is removed on exit');
    t.false(err.includes('    at '), `no stack trace: ${err}`);
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
});

test('govgate demo on a port in use exits 1 saying how to pick another', async (t) => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
  try {
    const port = (blocker.address() as AddressInfo).port;
    const r = await runCliAsync(['demo', '--port', String(port)], { cwd, env: { PORT: '' } });
    t.is(r.status, 1, r.stderr);
    t.is(lines(r.stderr).length, 1, r.stderr);
    t.regex(r.stderr, new RegExp(`port ${port} .*already in use.*--port`));
  } finally {
    blocker.close();
  }
});
