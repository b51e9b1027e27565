import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { makeGatewayDir, REPO_ROOT } from '../helpers/gateway-harness.js';
import { runCliAsync } from './support.js';

const VERSION = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;

// An empty directory: --help and --version must work where no configuration exists.
const dir = makeGatewayDir();
test.after.always(() => rmSync(dir, { recursive: true, force: true }));

const cli = (...args: string[]) => runCliAsync(args, { cwd: dir, env: { PORT: '', GOVGATE_CONFIG: undefined } });

const HELP_CASES: { args: string[]; mentions: string }[] = [
  { args: ['serve'], mentions: 'govgate serve' },
  { args: ['demo'], mentions: 'govgate demo [--port N]' },
  { args: ['keys'], mentions: 'keys create --customer ID' },
  { args: ['keys', 'create'], mentions: 'govgate keys create --customer ID' },
  { args: ['keys', 'list'], mentions: 'govgate keys list' },
  { args: ['keys', 'revoke'], mentions: 'govgate keys revoke KEY_ID' },
  { args: ['policy'], mentions: 'policy check [FILE]' },
  { args: ['policy', 'check'], mentions: 'govgate policy check [FILE]' },
  { args: ['policy', 'test'], mentions: '--expect allow|block' },
  { args: ['cleanup-logs'], mentions: 'govgate cleanup-logs [DAYS]' },
  { args: ['audit'], mentions: 'govgate audit verify' },
  { args: ['audit', 'verify'], mentions: '--export-head' },
  { args: ['backup'], mentions: 'govgate backup' },
  { args: ['usage'], mentions: 'govgate usage [--customer ID]' },
  { args: ['version'], mentions: 'govgate version' },
];

for (const { args, mentions } of HELP_CASES) {
  // -h is the same code path; trying it on a few commands keeps the file quick.
  for (const flag of args.length === 2 ? ['--help'] : ['--help', '-h']) {
    test(`govgate ${args.join(' ')} ${flag} prints its usage and exits 0`, async (t) => {
      const r = await cli(...args, flag);
      t.is(r.status, 0, r.stderr);
      t.true(r.stdout.startsWith('usage: govgate'), r.stdout);
      t.true(r.stdout.includes(mentions), r.stdout);
      t.is(r.stderr, '');
    });
  }
}

test('--help wins over the other arguments, even a wrong one, and needs no configuration', async (t) => {
  const r = await cli('keys', 'create', '--bogus', '--help');
  t.is(r.status, 0, r.stderr);
  t.true(r.stdout.includes('govgate keys create'));
});

test('govgate help COMMAND [SUB] prints the same usage as COMMAND [SUB] --help', async (t) => {
  const [viaHelp, viaFlag] = await Promise.all([cli('help', 'policy', 'test'), cli('policy', 'test', '--help')]);
  t.is(viaHelp.status, 0);
  t.is(viaHelp.stdout, viaFlag.stdout);
});

test('govgate --help, -h and help list every command, demo and version included', async (t) => {
  for (const r of await Promise.all([cli('--help'), cli('-h'), cli('help')])) {
    t.is(r.status, 0, r.stderr);
    for (const command of ['serve', 'demo', 'keys', 'policy test', 'cleanup-logs', 'audit verify', 'backup', 'usage', 'version', '--expect']) {
      t.true(r.stdout.includes(command), `${command} in ${r.stdout}`);
    }
  }
});

test('govgate --version and govgate version print the package version', async (t) => {
  for (const r of await Promise.all([cli('--version'), cli('version'), cli('--config', 'elsewhere.yaml', 'version')])) {
    t.is(r.status, 0, r.stderr);
    t.is(r.stdout.trim(), VERSION);
  }
});

test('--help of an unknown command is a usage error', async (t) => {
  const r = await cli('frobnicate', '--help');
  t.is(r.status, 2);
  t.regex(r.stderr, /unknown command "frobnicate"/);
});
