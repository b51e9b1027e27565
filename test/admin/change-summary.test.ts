import test from 'ava';
import { changeSummary } from '../../gateway/admin/change-summary.js';

const summary = (kind: string, detail: Record<string, unknown>) => changeSummary(kind, JSON.stringify(detail));

test('each kind of control event is summarised on one line from the fields it names', (t) => {
  const hash = 'ab12cd34ef56'.padEnd(64, '0');
  t.is(summary('policy.loaded', { policy_hash: hash, path: 'config/policy.yaml', rules: 3, mode: 'enforce' }), 'policy ab12cd34ef56, 3 rules, enforce');
  t.is(summary('policy.rejected', { path: 'config/policy.yaml', line: 3, col: 18, key: 'block_threshold', error: 'x' }), 'edit rejected at line 3, col 18, block_threshold');
  t.is(summary('key.created', { key_id: 'key_3f2a9c1d', customer_id: 'acme' }), 'key key_3f2a9c1d, customer acme');
  t.is(summary('key.revoked', { key_id: 'key_3f2a9c1d' }), 'key key_3f2a9c1d');
  t.is(summary('gateway.started', { version: '1.4.0', config_hash: 'c'.repeat(64), pid: 4242 }), 'version 1.4.0, pid 4242');
  t.is(summary('gateway.stopped', { pid: 4242 }), 'pid 4242');
  t.is(summary('retention.ran', { decisions: 120, outcomes: 80, retention_days: 90, anchors: [] }), '120 decisions and 80 outcomes removed');
  t.is(summary('backup.made', { file: 'data/backups/audit-2026-11-27.db', bytes: 1, deleted: [] }), 'data/backups/audit-2026-11-27.db');
  t.is(summary('admin.login', { address: '203.0.113.9' }), '203.0.113.9');
  t.is(summary('admin.login_failed', { address: '203.0.113.9' }), '203.0.113.9');
});

test('fields a summary does not name are never shown, and odd details show as nothing', (t) => {
  const rejected = summary('policy.rejected', { line: 1, col: 1, key: 'x', error: 'unexpected value "sk-live-0123"' });
  t.false(rejected.includes('sk-live'), 'a rejected edit\'s error may quote the file');
  t.is(summary('admin.login_failed', { address: { nested: 'object' }, token: 'sk-live-0123' }), '');
  t.is(changeSummary('backup.made', 'not json'), '');
  t.is(changeSummary('backup.made', '["file"]'), '');
  t.is(summary('constructor', { file: 'x' }), '', 'an unknown kind, even one named like a prototype property');
});
