import { accessSync, constants, existsSync, readFileSync, statSync, type Stats } from 'node:fs';
import { userInfo } from 'node:os';
import path from 'node:path';

/** Why the audit file cannot take a commit; `code` is stable, for logs, metrics and Sentry. */
export class AuditStoreError extends Error {
  constructor(readonly code: 'audit_file_missing' | 'audit_file_replaced' | 'audit_file_read_only', message: string) {
    super(message);
    this.name = 'AuditStoreError';
  }
}

/** Which file a path named when it was opened. */
export interface FileIdentity {
  readonly dev: number;
  readonly ino: number;
}

/**
 * The audit file the writer holds open. SQLite keeps writing to a deleted or
 * replaced file through its open descriptor, and succeeds: every row after
 * that would be lost with no error. And a gateway running as root writes
 * through permission bits. So each commit first checks that the path still
 * names the file that was opened and that it has not been made read-only,
 * one stat() per group commit, not per row.
 */
export class StoreFile {
  private readonly dev: number;
  private readonly ino: number;

  /** `identity`: the file another holder opened (the writer's thread checks the gateway's file, not whatever is at the path now). */
  constructor(readonly path: string, identity?: FileIdentity) {
    const { dev, ino } = identity ?? statSync(path);
    this.dev = dev;
    this.ino = ino;
  }

  get identity(): FileIdentity {
    return { dev: this.dev, ino: this.ino };
  }

  /** Throws AuditStoreError when the path no longer takes writes. */
  assertWritable(): void {
    const stat = statSync(this.path, { throwIfNoEntry: false });
    if (!stat) throw new AuditStoreError('audit_file_missing', `the audit database ${this.path} was deleted`);
    if (stat.dev !== this.dev || stat.ino !== this.ino) {
      throw new AuditStoreError('audit_file_replaced', `the audit database ${this.path} was replaced by another file`);
    }
    if ((stat.mode & 0o222) === 0) throw new AuditStoreError('audit_file_read_only', `the audit database ${this.path} was made read-only`);
  }
}

/** The process's own identity and a way to test write access; injectable so tests running as root can see what another user would. */
export interface WriteAccess {
  readonly uid: number;
  readonly user: string;
  canWrite(file: string, stat: Stats): boolean;
}

/** This process: access(2) for ordinary users; root passes access(2) always, so it is held to the permission bits, as StoreFile does. */
export function processWriteAccess(): WriteAccess {
  const uid = process.getuid?.() ?? -1;
  const user = userInfo({ encoding: 'utf8' }).username;
  return {
    uid,
    user,
    canWrite(file, stat) {
      if (uid === 0) return (stat.mode & 0o222) !== 0;
      try {
        accessSync(file, constants.W_OK);
        return true;
      } catch {
        return false;
      }
    },
  };
}

/**
 * Why the gateway's user cannot write the audit store, as one line naming the
 * file, its owner and the fix; null when it can. SQLite opens a file it may
 * not write read-only without a word, so without this check the gateway would
 * start, then refuse every request with 503. The directory must be writable
 * too: SQLite creates the -wal and -shm files beside the database.
 */
export function storeWriteProblem(dbPath: string, display: (file: string) => string, access: WriteAccess = processWriteAccess()): string | null {
  const dir = nearestExisting(path.dirname(dbPath));
  const candidates = [dbPath, `${dbPath}-wal`, `${dbPath}-shm`];
  // The database first: it is what the admin will recognise and chown; its directory matters as well, for -wal and -shm.
  for (const file of [...candidates, dir]) {
    const stat = statSync(file, { throwIfNoEntry: false });
    if (!stat || access.canWrite(file, stat)) continue;
    const shown = stat.isDirectory() ? `${display(file).replace(/\/+$/, '')}/` : display(file);
    const what = stat.isDirectory() ? ` (the directory of the audit database ${display(dbPath)})` : '';
    return `${shown}${what} is owned by ${ownerName(stat.uid)} and not writable by user ${access.user} (uid ${access.uid}): chown it, or run the gateway as its owner`;
  }
  return null;
}

/** The directory that would hold the database: data/ may not exist yet, and is created under its nearest existing ancestor. */
function nearestExisting(dir: string): string {
  let at = path.resolve(dir);
  while (!existsSync(at) && path.dirname(at) !== at) at = path.dirname(at);
  return at;
}

/** `root (uid 0)`-style owner: the name from /etc/passwd when it has one, the uid always. */
function ownerName(uid: number): string {
  try {
    for (const line of readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const [name, , id] = line.split(':');
      if (name && Number(id) === uid && id !== '') return uid === 0 ? name : `${name} (uid ${uid})`;
    }
  } catch {
    // No passwd file (a scratch container): the uid alone still says who owns it.
  }
  return `uid ${uid}`;
}
