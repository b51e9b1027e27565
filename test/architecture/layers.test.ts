import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { REPO_ROOT } from '../helpers/gateway-harness.js';

/**
 * The folders of gateway/, lowest first. A file imports from its own folder
 * and from lower layers, never sideways or upward, so the store, the policy
 * and the error catalogue can be read (and tested) without anything above
 * them. `(root)` is gateway/app.ts, which wires the stages together.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['errors', 'config'],
  ['store', 'policy'],
  ['auth'],
  ['observability'],
  ['audit', 'facts'],
  ['limits'],
  ['proxy', 'admin'],
  ['fleet'],
  ['http'],
  ['(root)'],
  ['cli'],
];

/** The SQLite tables of the audit trail; only gateway/audit/ writes them (the schema creates them in gateway/store/). */
const AUDIT_TABLES = ['usagelog', 'usagelog_outcome', 'audit_anchor', 'audit_event', 'policy_version', 'batch_input_file'];

const GATEWAY = path.join(REPO_ROOT, 'gateway');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

function folderOf(file: string): string {
  const rel = path.relative(GATEWAY, file).split(path.sep);
  return rel.length > 1 ? rel[0]! : '(root)';
}

function layerOf(folder: string): number {
  const i = LAYERS.findIndex((layer) => layer.includes(folder));
  if (i < 0) throw new Error(`gateway/${folder} is in no layer of test/architecture/layers.test.ts: add it where it belongs`);
  return i;
}

/** Static, type-only and dynamic imports of relative modules. */
function relativeImports(source: string): string[] {
  return [...source.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)'(\.{1,2}\/[^']+)'/g)].map((m) => m[1]!);
}

const files = sourceFiles(GATEWAY);

test('every folder of gateway/ imports only from its own folder or lower layers', (t) => {
  const upward: string[] = [];
  for (const file of files) {
    const from = folderOf(file);
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      const to = folderOf(path.resolve(path.dirname(file), spec));
      if (to !== from && layerOf(to) >= layerOf(from)) upward.push(`${path.relative(REPO_ROOT, file)} imports ${spec} (${from} → ${to})`);
    }
  }
  t.deepEqual(upward, []);
});

test('the layer check sees an upward import', (t) => {
  t.deepEqual(relativeImports(`import type { X } from '../http/context.js';\nconst m = await import('./y.js');`), ['../http/context.js', './y.js']);
  t.true(layerOf('store') < layerOf('audit') && layerOf('http') > layerOf('proxy'));
});

test('only gateway/audit/ writes the audit tables of the SQLite file', (t) => {
  const write = new RegExp(`\\b(?:INSERT\\s+(?:OR\\s+\\w+\\s+)?INTO|UPDATE|DELETE\\s+FROM)\\s+(?:${AUDIT_TABLES.join('|')})\\b`, 'i');
  const writers = files.filter((file) => {
    const source = readFileSync(file, 'utf8');
    // PostgreSQL's central tables carry the same names; they are the fleet's, written over a pg client, not a Db.
    const sqlite = /from '[^']*store\/connection\.js'/.test(source);
    return sqlite && write.test(source) && !['audit', 'store'].includes(folderOf(file));
  });
  t.deepEqual(writers.map((f) => path.relative(REPO_ROOT, f)), []);
});
