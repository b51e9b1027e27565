import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { closedPort } from './closed-port.js';

/** Debian installs the server binaries per major version, off PATH. */
const DEBIAN_ROOT = '/usr/lib/postgresql';

/** The newest installed server's bin directory, or null when PostgreSQL is not installed. */
export function postgresBinDir(): string | null {
  if (!existsSync(DEBIAN_ROOT)) return null;
  const versions = readdirSync(DEBIAN_ROOT)
    .filter((v) => /^\d+$/.test(v) && existsSync(path.join(DEBIAN_ROOT, v, 'bin/initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] === undefined ? null : path.join(DEBIAN_ROOT, versions[0], 'bin');
}

/** initdb refuses to run as root; CI runs as root, so the cluster belongs to the `postgres` user there. */
function runAs(): { user: string; uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const r = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const g = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (r.status !== 0 || g.status !== 0) throw new Error('running as root, but there is no "postgres" user to own the test cluster');
  return { user: 'postgres', uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

/** Whether tests can start a PostgreSQL cluster here (CI installs the Debian package; see .ci/run). */
export function postgresInstalled(): boolean {
  if (postgresBinDir() === null) return false;
  if (process.getuid?.() === 0) return spawnSync('id', ['-u', 'postgres']).status === 0;
  return true;
}

export interface PostgresCluster {
  /** postgres://postgres@127.0.0.1:PORT/postgres: trust authentication, no password. */
  readonly url: string;
  readonly port: number;
  /** Stops the server (fast: open connections are cut, as in an outage). */
  stop(): void;
  /** Starts the same cluster again on the same port. */
  start(): void;
  /** Stops the server and removes its directory. */
  close(): void;
}

/**
 * A throw-away cluster for one test file: its own directory, a free port on
 * 127.0.0.1, its socket in that directory, and no fsync, since nothing in it
 * needs to survive a crash of the machine.
 */
export async function startPostgres(): Promise<PostgresCluster> {
  const bin = postgresBinDir();
  if (bin === null) throw new Error('PostgreSQL is not installed (apt-get install -y postgresql)');
  const owner = runAs();
  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-pg-'));
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const data = path.join(dir, 'data');
  const log = path.join(dir, 'server.log');
  const port = await closedPort();

  const run = (tool: string, args: string[]) => {
    const command = owner ? 'runuser' : path.join(bin, tool);
    const argv = owner ? ['-u', owner.user, '--', path.join(bin, tool), ...args] : args;
    const r = spawnSync(command, argv, { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) {
      const serverLog = existsSync(log) ? readFileSync(log, 'utf8') : '';
      throw new Error(`${tool} ${args[0] ?? ''} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}${serverLog}`);
    }
  };
  const settings = [
    '-c listen_addresses=127.0.0.1',
    `-c port=${port}`,
    `-c unix_socket_directories=${dir}`,
    '-c fsync=off',
    '-c synchronous_commit=off',
    '-c full_page_writes=off',
  ].join(' ');
  const start = () => run('pg_ctl', ['start', '-D', data, '-l', log, '-w', '-t', '30', '-o', settings]);
  const stop = () => run('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w', '-t', '30']);

  try {
    run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions']);
    start();
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let running = true;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    stop() {
      if (!running) return;
      stop();
      running = false;
    },
    start() {
      if (running) return;
      start();
      running = true;
    },
    close() {
      try {
        if (running) stop();
      } finally {
        running = false;
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
