import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';

const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
const ALERTS = 'config/alerts.yml';
const ALERT_TESTS = 'test/alerts/alerts.test.yml';

/** Debian's prometheus package provides promtool (CI installs it; see .ci/run). */
const installed = !spawnSync('promtool', ['--version']).error;
if (!installed) console.warn('promtool: alert rule tests skipped: it is not installed (apt-get install -y prometheus)');
const skipNote = installed ? '' : ' (SKIPPED: promtool is not installed; apt-get install -y prometheus)';
/** Tests that need a real promtool: skipped, and reported as such, where none is installed. */
const promtoolTest = installed ? test : test.skip;

function promtool(...args: string[]): { status: number | null; output: string } {
  const run = spawnSync('promtool', args, { cwd: REPO_ROOT, encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, output: `${run.stdout}${run.stderr}` };
}

promtoolTest(`promtool check rules accepts ${ALERTS}${skipNote}`, (t) => {
  const { status, output } = promtool('check', 'rules', ALERTS);
  t.is(status, 0, output);
});

promtoolTest(`promtool test rules passes ${ALERT_TESTS}${skipNote}`, (t) => {
  const { status, output } = promtool('test', 'rules', ALERT_TESTS);
  t.is(status, 0, output);
});

/** A plain-text scan is enough: every metric is declared as `name: 'govgate_…'` in gateway/. */
function registeredMetrics(): Set<string> {
  const names = new Set<string>();
  const dir = path.join(REPO_ROOT, 'gateway');
  for (const file of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!file.endsWith('.ts')) continue;
    for (const m of readFileSync(path.join(dir, file), 'utf8').matchAll(/name: '(govgate_\w+)'/g)) names.add(m[1]!);
  }
  return names;
}

test('every metric the alert rules name is one the gateway registers', (t) => {
  // Recording rules (`job:govgate_…:ratio_rate15m`) are bounded by colons and are not metrics of the gateway.
  const referenced = new Set([...readFileSync(path.join(REPO_ROOT, ALERTS), 'utf8').matchAll(/(?<![\w:])govgate_\w+(?![\w:])/g)].map((m) => m[0]));
  t.true(referenced.has('govgate_requests_total'), 'the scan of the rules found the metrics they use');
  const registered = registeredMetrics();
  const unknown = [...referenced].filter((name) => !registered.has(name));
  t.deepEqual(unknown, [], `${ALERTS} names metrics no gateway/**/*.ts registers`);
});
