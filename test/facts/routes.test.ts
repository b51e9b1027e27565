import test from 'ava';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { catalogue, matchRoute } from '../../gateway/facts/routes.js';

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');

function nameOf(method: string, path: string): string | undefined {
  const match = matchRoute(method, path);
  return match.kind === 'operation' ? match.operation.name : undefined;
}

test('the operation names the route and, for every method but POST on a collection, what the method does', (t) => {
  t.is(nameOf('POST', '/v1/chat/completions'), 'chat.completions');
  t.is(nameOf('GET', '/v1/chat/completions'), 'chat.completions.list');
  t.is(nameOf('GET', '/v1/chat/completions/chatcmpl-1'), 'chat.completions.get');
  t.is(nameOf('POST', '/v1/chat/completions/chatcmpl-1'), 'chat.completions.update');
  t.is(nameOf('DELETE', '/v1/chat/completions/chatcmpl-1'), 'chat.completions.delete');
  t.is(nameOf('GET', '/v1/chat/completions/chatcmpl-1/messages'), 'chat.completions.messages.list');
  t.is(nameOf('GET', '/v1/files/file-abc'), 'files.get');
  t.is(nameOf('DELETE', '/v1/files/file-abc'), 'files.delete');
  t.is(nameOf('GET', '/v1/files/file-abc/content'), 'files.content.get');
  t.is(nameOf('GET', '/v1/models'), 'models.list');
  t.is(nameOf('POST', '/v1/fine_tuning/jobs/ftjob-1/cancel'), 'fine_tuning.jobs.cancel');
  t.is(nameOf('POST', '/v1/threads/runs'), 'threads.runs');
  t.is(nameOf('POST', '/v1/threads/thread_1/runs'), 'threads.runs');
});

test('letters-only and colon-bearing ids are ids, never operation names', (t) => {
  t.is(nameOf('GET', '/v1/models/babbage'), 'models.get');
  t.is(nameOf('GET', '/v1/models/ft:gpt-4o-mini:acme::abc'), 'models.get');
  t.is(nameOf('GET', '/v1/files/content'), 'files.get');
});

test('a trailing slash names the same route', (t) => {
  t.is(nameOf('POST', '/v1/chat/completions/'), 'chat.completions');
  t.is(nameOf('GET', '/v1/models/'), 'models.list');
});

test('a path that matches a route only when case is ignored is unknown, not an id', (t) => {
  t.is(matchRoute('POST', '/v1/Chat/Completions').kind, 'unknown');
  t.is(matchRoute('POST', '/v1/Fine_tuning/jobs').kind, 'unknown');
  t.is(matchRoute('POST', '/v1/chat/COMPLETIONS').kind, 'unknown');
  t.is(matchRoute('GET', '/v1/vector_stores/vs_1/Files').kind, 'unknown');
  t.is(matchRoute('POST', '/v1/anything').kind, 'unknown');
  t.is(matchRoute('POST', '/v1/chat//completions').kind, 'unknown');
});

test('a method a route does not answer is named with the ones it does', (t) => {
  const match = matchRoute('PUT', '/v1/chat/completions');
  t.is(match.kind, 'method_not_allowed');
  if (match.kind === 'method_not_allowed') t.deepEqual([...match.allow].sort(), ['GET', 'POST']);
});

test('every model-bearing operation says where the provider reads the model', (t) => {
  const where = (method: string, path: string) => {
    const match = matchRoute(method, path);
    return match.kind === 'operation' ? match.operation.model : undefined;
  };
  t.deepEqual(where('POST', '/v1/realtime/client_secrets'), { in: 'json', path: ['session', 'model'], required: true });
  t.deepEqual(where('POST', '/v1/audio/transcriptions'), { in: 'form' });
  t.deepEqual(where('GET', '/v1/realtime'), { in: 'query' });
  t.deepEqual(where('GET', '/v1/chat/completions'), { in: 'none' });
  for (const { path, operation } of catalogue()) {
    if (operation.method === 'POST' && /^\/v1\/(chat\/completions|completions|embeddings|responses|moderations|images\/generations|audio\/speech)$/.test(path)) {
      t.deepEqual(operation.model, { in: 'json', path: ['model'], required: true }, path);
    }
  }
});

test('operation names are unique per route and method, and no two routes share a name but differ in model source', (t) => {
  const byName = new Map<string, string>();
  for (const { operation } of catalogue()) {
    const source = JSON.stringify(operation.model);
    const seen = byName.get(operation.name);
    if (seen !== undefined) t.is(seen, source, operation.name);
    byName.set(operation.name, source);
  }
  t.true(byName.size > 50);
});

test('docs/operations.md lists every route of the catalogue with its operation, and nothing else', (t) => {
  const doc = readFileSync(path.join(REPO_ROOT, 'docs/operations.md'), 'utf8');
  const documented = [...doc.matchAll(/^\| `([A-Z]+ \/v1\/[^`]*)` \| `([^`]+)` \|/gm)].map((m) => `${m[1]} ${m[2]}`);
  const actual = catalogue().map(({ path: p, operation }) => `${operation.method} ${p} ${operation.name}`);
  t.deepEqual([...documented].sort(), [...actual].sort());
});
