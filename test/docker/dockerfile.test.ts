import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { parse as parseYaml } from 'yaml';
import { REPO_ROOT } from '../helpers/gateway-harness.js';

/*
 * No Docker engine runs on the build machines, so the image is checked
 * against the project as text: every expectation below is read from the
 * project's own files (package.json, the CI workflow, config/gateway.yaml,
 * tsconfig.build.json), so the Dockerfile cannot drift from them unnoticed.
 */

interface Instruction {
  keyword: string;
  args: string;
  line: number;
}

interface Stage {
  /** The base image with build args substituted, e.g. `node:20-bookworm-slim`. */
  image: string;
  name: string | null;
  instructions: Instruction[];
}

function readRepoFile(file: string): string {
  return readFileSync(path.join(REPO_ROOT, file), 'utf8');
}

/** Instructions with comment lines dropped and `\` continuations joined, as the Dockerfile frontend reads them. */
function parseInstructions(text: string): Instruction[] {
  const out: Instruction[] = [];
  let pending = '';
  let startLine = 0;
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (/^\s*#/.test(line)) return;
    if (pending === '' && line.trim() === '') return;
    if (pending === '') startLine = i + 1;
    const continued = /\\\s*$/.test(line);
    pending += (pending === '' ? '' : ' ') + (continued ? line.replace(/\\\s*$/, '') : line).trim();
    if (continued) return;
    const m = /^(\S+)\s*(.*)$/.exec(pending)!;
    out.push({ keyword: m[1]!.toUpperCase(), args: m[2]!.trim(), line: startLine });
    pending = '';
  });
  return out;
}

function substitute(text: string, args: Record<string, string>): string {
  return text.replace(/\$\{(\w+)\}|\$(\w+)/g, (whole, a: string | undefined, b: string | undefined) => args[(a ?? b)!] ?? whole);
}

function parseStages(instructions: Instruction[]): Stage[] {
  const globalArgs: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === 'ARG' && stages.length === 0) {
      const m = /^(\w+)(?:=(.*))?$/.exec(ins.args);
      if (m && m[2] !== undefined) globalArgs[m[1]!] = m[2].replace(/^"(.*)"$/, '$1');
      continue;
    }
    if (ins.keyword === 'FROM') {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`line ${ins.line}: cannot read FROM ${ins.args}`);
      let image = substitute(m[1]!, globalArgs);
      // `FROM <earlier stage>` builds on that stage, and so on its base image.
      const parent = stages.find((s) => s.name === image);
      if (parent) image = parent.image;
      stages.push({ image, name: m[2] ?? null, instructions: [] });
      continue;
    }
    stages.at(-1)?.instructions.push(ins);
  }
  return stages;
}

/** Exec-form (`["a", "b"]`) arguments, or null for the shell form. */
function execForm(args: string): string[] | null {
  if (!args.startsWith('[')) return null;
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) throw new Error(`not a JSON string array: ${args}`);
  return parsed as string[];
}

interface Copy {
  from: string | null;
  sources: string[];
  dest: string;
  line: number;
}

function parseCopy(ins: Instruction): Copy {
  let rest = ins.args;
  let from: string | null = null;
  for (;;) {
    const flag = /^--([\w-]+)(?:=(\S+))?\s+/.exec(rest);
    if (!flag) break;
    if (flag[1] === 'from') from = flag[2] ?? null;
    rest = rest.slice(flag[0].length);
  }
  const parts = execForm(rest) ?? rest.split(/\s+/);
  if (parts.length < 2) throw new Error(`line ${ins.line}: ${ins.keyword} needs a source and a destination`);
  return { from, sources: parts.slice(0, -1), dest: parts.at(-1)!, line: ins.line };
}

/** Where each source of a COPY lands in the image, given the stage's working directory. */
function copyTargets(copy: Copy, workdir: string): string[] {
  const dest = path.posix.resolve(workdir, copy.dest);
  const intoDir = copy.dest.endsWith('/') || copy.sources.length > 1;
  return copy.sources.map((src) => (intoDir ? path.posix.join(dest, path.posix.basename(src)) : dest));
}

/** The working directory in force at each instruction of a stage. */
function withWorkdir(stage: Stage): { ins: Instruction; workdir: string }[] {
  let workdir = '/';
  return stage.instructions.map((ins) => {
    if (ins.keyword === 'WORKDIR') workdir = path.posix.resolve(workdir, ins.args);
    return { ins, workdir };
  });
}

/** .dockerignore semantics: the last matching pattern wins, `!` re-includes, a match on a directory covers what is under it. */
function dockerignoreMatcher(text: string): (file: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).trim()).replace(/^\/+|\/+$/g, '');
      const source = pattern
        .split(/(\*\*|\*|\?)/)
        .map((part) => (part === '**' ? '.*' : part === '*' ? '[^/]*' : part === '?' ? '[^/]' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('');
      return { negate, regex: new RegExp(`^${source}$`) };
    });
  return (file) => {
    const segments = path.posix.normalize(file).replace(/^\/+|\/+$/g, '').split('/');
    const candidates = segments.map((_s, i) => segments.slice(0, i + 1).join('/'));
    let ignored = false;
    for (const rule of rules) {
      if (candidates.some((c) => rule.regex.test(c))) ignored = !rule.negate;
    }
    return ignored;
  };
}

const dockerfile = readRepoFile('Dockerfile');
const stages = parseStages(parseInstructions(dockerfile));
const runtime = stages.at(-1)!;
const runtimeAt = withWorkdir(runtime);
const runtimeWorkdir = runtimeAt.at(-1)?.workdir ?? '/';
const pkg = JSON.parse(readRepoFile('package.json')) as { engines?: { node?: string }; scripts: Record<string, string> };
const gatewayConfig = parseYaml(readRepoFile('config/gateway.yaml')) as { server: { port: number }; audit: { path: string } };
/** Where the shipped configuration puts the audit database, as a directory inside the image. */
const dataDir = path.posix.resolve(runtimeWorkdir, path.posix.dirname(gatewayConfig.audit.path));

function instructionsOf(stage: Stage, keyword: string): Instruction[] {
  return stage.instructions.filter((i) => i.keyword === keyword);
}

function nodeMajorOf(image: string): number | null {
  const m = /^(?:docker\.io\/)?(?:library\/)?node:(\d+)(?:[.-]|$)/.exec(image);
  return m ? Number(m[1]) : null;
}

/** The project's Node major: package.json engines, which the CI workflow must agree with. */
function projectNodeMajor(): { engines: number; ci: number[] } {
  const engines = Number(/(\d+)/.exec(pkg.engines?.node ?? '')?.[1]);
  const workflow = parseYaml(readRepoFile('.github/workflows/ci.yml')) as { jobs: Record<string, { steps?: { uses?: string; with?: Record<string, unknown> }[] }> };
  const ci = Object.values(workflow.jobs)
    .flatMap((job) => job.steps ?? [])
    .filter((step) => step.uses?.startsWith('actions/setup-node'))
    .map((step) => Number(/(\d+)/.exec(String(step.with?.['node-version'] ?? ''))?.[1]));
  return { engines, ci };
}

/** `npm start`'s final command, e.g. ["node", "dist/gateway/cli/main.js", "serve"], and what runs before it. */
function startCommand(): { before: string[]; command: string[] } {
  const steps = pkg.scripts.start!.split('&&').map((s) => s.trim());
  return { before: steps.slice(0, -1), command: steps.at(-1)!.split(/\s+/) };
}

test('the image is built in stages', (t) => {
  t.true(stages.length >= 2, `${stages.length} FROM line(s): the compiler toolchain and dev dependencies would ship in the image`);
});

test('every stage runs the Node major the project and its CI use', (t) => {
  const { engines, ci } = projectNodeMajor();
  t.true(Number.isInteger(engines), `package.json engines.node has no major: ${pkg.engines?.node}`);
  t.true(ci.length > 0, 'the CI workflow sets up no Node version');
  for (const major of ci) t.is(major, engines, 'the CI runs a different Node major than package.json engines');
  for (const stage of stages) {
    t.is(nodeMajorOf(stage.image), engines, `stage ${stage.name ?? '(unnamed)'} is built FROM ${stage.image}`);
  }
});

test('every file copied from the build context exists and is not excluded by .dockerignore', (t) => {
  const ignored = dockerignoreMatcher(readRepoFile('.dockerignore'));
  const contextCopies = stages.flatMap((s) => [...instructionsOf(s, 'COPY'), ...instructionsOf(s, 'ADD')]).map(parseCopy).filter((c) => c.from === null);
  t.true(contextCopies.length > 0, 'nothing is copied from the build context');
  for (const copy of contextCopies) {
    for (const src of copy.sources) {
      t.false(/^[a-z]+:\/\//i.test(src), `line ${copy.line}: ${src} is fetched from the network, not the checkout`);
      t.true(existsSync(path.join(REPO_ROOT, src)), `line ${copy.line}: COPY ${src} does not exist in the repository`);
      t.false(ignored(src), `line ${copy.line}: COPY ${src} is excluded by .dockerignore, so the build would not see it`);
    }
  }
});

test('COPY --from names an earlier stage', (t) => {
  stages.forEach((stage, i) => {
    const earlier = new Set(stages.slice(0, i).map((s) => s.name).filter((n): n is string => n !== null));
    for (const copy of instructionsOf(stage, 'COPY').map(parseCopy).filter((c) => c.from !== null)) {
      t.true(earlier.has(copy.from!), `line ${copy.line}: --from=${copy.from} is not an earlier stage`);
    }
  });
});

test('the build stage installs with npm ci, which builds through prepare, then drops dev dependencies', (t) => {
  // The build script is what `prepare` must run, or `npm ci` leaves no dist/ behind.
  t.true(
    pkg.scripts.prepare !== undefined && (pkg.scripts.prepare.includes('npm run build') || pkg.scripts.prepare === pkg.scripts.build),
    `package.json prepare does not build: ${pkg.scripts.prepare}`,
  );
  const builder = stages.find((s) => instructionsOf(s, 'RUN').some((r) => /\bnpm ci\b/.test(r.args)));
  if (!builder) {
    t.fail('no stage runs `npm ci`');
    return;
  }
  t.not(builder, runtime, 'the runtime stage itself runs npm ci, so it carries the build toolchain');
  const run = instructionsOf(builder, 'RUN').map((r) => r.args).join(' && ');
  const ci = run.search(/\bnpm ci\b/);
  const prune = run.search(/\bnpm prune\b[^&;|]*(--omit[= ]dev|--production)/);
  t.true(prune > ci, 'the build stage does not prune dev dependencies after npm ci');

  // What the build needs must be in place before `npm ci` runs prepare.
  const tsBuild = JSON.parse(readRepoFile('tsconfig.build.json')) as { extends?: string; include?: string[] };
  const needed = ['package.json', 'package-lock.json', 'tsconfig.build.json', ...(tsBuild.extends ? [tsBuild.extends] : []), ...(tsBuild.include ?? [])];
  const copied = new Set<string>();
  for (const { ins, workdir } of withWorkdir(builder)) {
    if (ins.keyword === 'RUN' && /\bnpm ci\b/.test(ins.args)) break;
    if (ins.keyword === 'COPY') for (const target of copyTargets(parseCopy(ins), workdir)) copied.add(target);
  }
  const buildDir = withWorkdir(builder).find(({ ins }) => ins.keyword === 'RUN' && /\bnpm ci\b/.test(ins.args))!.workdir;
  for (const file of needed) {
    t.true(copied.has(path.posix.resolve(buildDir, file)), `${file} is not copied before npm ci runs`);
  }
});

test('the runtime stage takes node_modules from a stage on the same base image, so native addons match its Node', (t) => {
  const copies = instructionsOf(runtime, 'COPY').map(parseCopy).filter((c) => c.from !== null && c.sources.some((s) => /(^|\/)node_modules\/?$/.test(s)));
  t.is(copies.length, 1, 'the runtime stage does not copy node_modules from the build stage');
  const from = stages.find((s) => s.name === copies[0]?.from);
  t.is(from?.image, runtime.image, 'better-sqlite3 is compiled on a different base image than it runs on');
});

test('the runtime stage runs as a non-root user who owns the data volume', (t) => {
  const users = instructionsOf(runtime, 'USER');
  t.true(users.length > 0, 'no USER in the runtime stage: the gateway would run as root');
  const user = users.at(-1)?.args.split(':')[0] ?? '';
  t.false(['root', '0', ''].includes(user), `USER ${user} is root`);
  // A fresh volume takes the ownership of the image's directory; a root-owned one leaves the gateway unable to create its database.
  const relative = path.posix.relative(runtimeWorkdir, dataDir);
  const owns = instructionsOf(runtime, 'RUN').some((r) =>
    new RegExp(`\\bchown\\b[^&;|]*\\b${user}(:\\S+)?\\s+[^&;|]*(${dataDir}|(^|\\s)${relative})(/|\\s|$)`).test(r.args),
  );
  t.true(owns, `${dataDir} is not chowned to ${user} in the runtime stage`);
});

test('the runtime stage declares the audit directory as a volume', (t) => {
  t.is(dataDir, '/app/data');
  const volumes = instructionsOf(runtime, 'VOLUME').flatMap((v) => execForm(v.args) ?? v.args.split(/\s+/));
  t.true(volumes.map((v) => path.posix.resolve(runtimeWorkdir, v)).includes(dataDir), `VOLUME ${volumes.join(' ')} does not include ${dataDir}`);
});

test('the runtime stage exposes the port of config/gateway.yaml', (t) => {
  const ports = instructionsOf(runtime, 'EXPOSE').flatMap((e) => e.args.split(/\s+/)).map((p) => p.replace(/\/tcp$/, ''));
  t.true(ports.includes(String(gatewayConfig.server.port)), `EXPOSE ${ports.join(' ')} does not include server.port ${gatewayConfig.server.port}`);
});

test('the HEALTHCHECK requests /healthz on the configured port', (t) => {
  const checks = instructionsOf(runtime, 'HEALTHCHECK');
  t.is(checks.length, 1, 'the runtime stage has no HEALTHCHECK (or several, of which only the last counts)');
  const args = checks[0]?.args ?? '';
  const cmd = /(?:^|\s)CMD\s+(.*)$/.exec(args)?.[1];
  t.truthy(cmd, `HEALTHCHECK ${args} runs no command`);
  t.true(cmd?.includes('/healthz'), `the health check does not request /healthz: ${cmd}`);
  t.true(cmd?.includes(String(gatewayConfig.server.port)), `the health check does not use server.port ${gatewayConfig.server.port}: ${cmd}`);
});

test('ENTRYPOINT and CMD run what npm start runs, with node as PID 1', (t) => {
  const { before, command } = startCommand();
  t.deepEqual(command.slice(0, 1), ['node'], `npm start does not end in a node command: ${pkg.scripts.start}`);
  t.true(command.includes('serve'), `npm start does not serve: ${pkg.scripts.start}`);
  // The image is built by the build stage; npm start's own steps before node must only be that build.
  for (const step of before) t.regex(step, /^npm run build\b/, `npm start does more than build before serving: ${step}`);

  const entrypoint = instructionsOf(runtime, 'ENTRYPOINT').at(-1);
  const cmd = instructionsOf(runtime, 'CMD').at(-1);
  // The shell form puts /bin/sh in front as PID 1, which does not pass SIGTERM on: the drain would never run.
  const entryArgs = entrypoint ? execForm(entrypoint.args) : [];
  const cmdArgs = cmd ? execForm(cmd.args) : [];
  t.not(entryArgs, null, `ENTRYPOINT is in shell form: ${entrypoint?.args}`);
  t.not(cmdArgs, null, `CMD is in shell form: ${cmd?.args}`);
  t.deepEqual([...(entryArgs ?? []), ...(cmdArgs ?? [])], command);
});

test('the entry file npm start runs is compiled from the sources and shipped in the runtime stage', (t) => {
  const entry = startCommand().command[1] ?? '';
  const tsBuild = JSON.parse(readRepoFile('tsconfig.build.json')) as { compilerOptions: { outDir: string; rootDir?: string } };
  const outDir = path.posix.normalize(tsBuild.compilerOptions.outDir);
  t.true(entry.startsWith(`${outDir}/`), `${entry} is not under the build's outDir ${outDir}`);
  const source = path.posix.join(tsBuild.compilerOptions.rootDir ?? '.', entry.slice(outDir.length + 1).replace(/\.js$/, '.ts'));
  t.true(existsSync(path.join(REPO_ROOT, source)), `${entry} would be compiled from ${source}, which does not exist`);

  const inImage = path.posix.resolve(runtimeWorkdir, entry);
  const shipped = runtimeAt.some(({ ins, workdir }) =>
    ins.keyword === 'COPY' && copyTargets(parseCopy(ins), workdir).some((target) => inImage === target || inImage.startsWith(`${target}/`)),
  );
  t.true(shipped, `nothing in the runtime stage copies ${inImage}`);
});

test('.dockerignore keeps node_modules and the audit data out of the build context', (t) => {
  const ignored = dockerignoreMatcher(readRepoFile('.dockerignore'));
  const dataInRepo = path.posix.dirname(path.posix.normalize(gatewayConfig.audit.path));
  for (const p of ['node_modules', 'node_modules/better-sqlite3/build/Release/better_sqlite3.node', dataInRepo, gatewayConfig.audit.path]) {
    t.true(ignored(p), `${p} is sent to the Docker daemon as build context`);
  }
  t.false(ignored('package.json'), '.dockerignore excludes package.json');
});
