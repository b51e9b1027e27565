import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { startGateway } from '../../gateway/app.js';
import { openDatabase } from '../../gateway/store/connection.js';
import { storeWriteProblem, type WriteAccess } from '../../gateway/store/store-file.js';
import { displayPath, loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { createErrorReporter } from '../../gateway/observability/error-reporter.js';
import { createLogger } from '../../gateway/observability/logger.js';
import { cliArgs } from '../helpers/cli.js';
import { FIXTURE_POLICY, makeGatewayDir, UPSTREAM_SECRET, writeGatewayYaml } from '../helpers/gateway-harness.js';

const dirs: string[] = [];

test.after.always(() => {
  for (const dir of dirs) {
    // The tests take write permission away; give it back so the directory can be removed.
    spawnSync('chmod', ['-R', 'u+w', dir]);
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A checkout pointing at an unreachable provider, optionally with data/audit.db already created. */
function checkout(withDb: boolean): string {
  const dir = makeGatewayDir();
  dirs.push(dir);
  writeGatewayYaml(dir, 'http://127.0.0.1:9');
  writeFileSync(path.join(dir, 'config/policy.yaml'), FIXTURE_POLICY);
  mkdirSync(path.join(dir, 'data'));
  if (withDb) openDatabase(path.join(dir, 'data/audit.db'), { synchronous: 'NORMAL' }).close();
  return dir;
}

async function start(dir: string): Promise<string> {
  const env = { OPENAI_API_KEY: UPSTREAM_SECRET };
  const config = loadGatewayConfig('config/gateway.yaml', env, dir);
  const logger = createLogger('silent');
  try {
    const gw = await startGateway(config, { logger, reporter: createErrorReporter(undefined, 'test'), env });
    await gw.close(0);
    return 'started';
  } catch (err) {
    return (err as Error).message;
  }
}

/** Stands in for an unprivileged user that can write nothing: the owner and uid are what the message names. */
const STRANGER: WriteAccess = { uid: 1000, user: 'gg', canWrite: () => false };

test('storeWriteProblem names the file, its owner, the user and the fix', (t) => {
  const dir = checkout(true);
  const db = path.join(dir, 'data/audit.db');
  t.is(storeWriteProblem(db, (f) => path.relative(dir, f), STRANGER), 'data/audit.db is owned by root and not writable by user gg (uid 1000): chown it, or run the gateway as its owner');
  const allButTheDirectory: WriteAccess = { ...STRANGER, canWrite: (file) => file !== path.join(dir, 'data') };
  t.regex(storeWriteProblem(db, (f) => path.relative(dir, f), allButTheDirectory) ?? '', /^data\/ \(the directory of the audit database data\/audit\.db\) is owned by root and not writable by user gg \(uid 1000\): chown it/);
  t.is(storeWriteProblem(db, (f) => f, { ...STRANGER, canWrite: () => true }), null);
});

test('the gateway refuses to start on a read-only audit.db (root is held to the permission bits)', async (t) => {
  const dir = checkout(true);
  const db = path.join(dir, 'data/audit.db');
  chmodSync(db, 0o444);
  const message = await start(dir);
  t.true(message.startsWith(`${displayPath(db)} is owned by `), message);
  t.true(message.endsWith(': chown it, or run the gateway as its owner'), message);
  t.false(message.includes('\n'), 'one line');
});

test('the gateway refuses to start when data/ is read-only and the database does not exist yet', async (t) => {
  const dir = checkout(false);
  chmodSync(path.join(dir, 'data'), 0o555);
  const message = await start(dir);
  t.regex(message, /data\/ \(the directory of the audit database .*audit\.db\) is owned by .* and not writable by user .*: chown it, or run the gateway as its owner$/);
});

/** The real case from the report: root owns data/audit.db (0644) and the gateway runs as another user. */
const canRunAsNobody = process.getuid?.() === 0 && spawnSync('runuser', ['-u', 'nobody', '--', 'true']).status === 0;

(canRunAsNobody ? test : test.skip)('govgate serve run as nobody refuses a root-owned audit.db with one line and exit 1', (t) => {
  const dir = checkout(true);
  // nobody must reach the config and policy, just not write the database.
  chmodSync(dir, 0o755);
  const r = spawnSync('runuser', ['-u', 'nobody', '--', process.execPath, ...cliArgs(['serve'])], {
    cwd: dir,
    env: { ...process.env, OPENAI_API_KEY: UPSTREAM_SECRET, PORT: '', HOME: dir },
    encoding: 'utf8',
    timeout: 60_000,
  });
  t.is(r.status, 1, r.stderr);
  t.regex(r.stderr, /^govgate: .*audit\.db is owned by root and not writable by user nobody \(uid 65534\): chown it, or run the gateway as its owner\n$/);
});
