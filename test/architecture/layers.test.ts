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
  return [...source.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)(['"])(\.{1,2}\/[^'"]+)\1/g)].map((m) => m[2]!);
}

const files = sourceFiles(GATEWAY);

/** INSERT, REPLACE, UPDATE or DELETE on an audit table, by name or through a template placeholder. */
const AUDIT_WRITE = new RegExp(
  `\\b(?:(?:INSERT|REPLACE)\\s+(?:OR\\s+\\w+\\s+)?INTO|UPDATE|DELETE\\s+FROM)\\s+(?:${AUDIT_TABLES.join('|')}|\\$\\{)\\b`,
  'i',
);

test('every folder of gateway/ imports only from its own folder or lower layers', (t) => {
  const upward: string[] = [];
  let seen = 0;
  for (const file of files) {
    const from = folderOf(file);
    for (const spec of relativeImports(readFileSync(file, 'utf8'))) {
      seen++;
      const to = folderOf(path.resolve(path.dirname(file), spec));
      if (to !== from && layerOf(to) >= layerOf(from)) upward.push(`${path.relative(REPO_ROOT, file)} imports ${spec} (${from} → ${to})`);
    }
  }
  t.deepEqual(upward, []);
  // Hundreds of imports, not a pattern that stopped matching.
  t.true(files.length > 100 && seen > 400, `${files.length} files, ${seen} imports`);
});

test('the layer check sees an upward import', (t) => {
  t.deepEqual(relativeImports(`import type { X } from '../http/context.js';\nconst m = await import('./y.js');\nimport { z } from "../z.js";`), ['../http/context.js', './y.js', '../z.js']);
  t.true(layerOf('store') < layerOf('audit') && layerOf('http') > layerOf('proxy'));
});

test('the write check sees writes to the audit tables, named or through a placeholder', (t) => {
  for (const sql of ['INSERT INTO usagelog (id) VALUES (?)', 'insert or ignore into audit_event', 'REPLACE INTO policy_version', 'UPDATE usagelog_outcome SET', 'DELETE FROM audit_anchor WHERE', 'DELETE FROM ${chain} WHERE']) {
    t.true(AUDIT_WRITE.test(sql), sql);
  }
  for (const sql of ['SELECT * FROM usagelog', 'INSERT INTO api_keys (id)', 'UPDATE api_keys SET revoked_at']) t.false(AUDIT_WRITE.test(sql), sql);
});

test('only gateway/audit/ writes the audit tables of the SQLite file', (t) => {
  const writers = files.filter((file) => {
    const source = readFileSync(file, 'utf8');
    // PostgreSQL's central tables carry the same names; they are the fleet's, written over a pg client, not SQLite.
    const sqlite = /connection\.js'|from 'better-sqlite3'/.test(source);
    return sqlite && AUDIT_WRITE.test(source) && folderOf(file) !== 'audit';
  });
  // The schema's own migrations (the chain backfill of files from before the chain) are the one exception.
  t.deepEqual(writers.map((f) => path.relative(REPO_ROOT, f)), ['gateway/store/schema.ts']);
});
