import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startGateway, type RunningGateway } from '../app.js';
import { openDatabase } from '../store/connection.js';
import { createKey } from '../auth/key-store.js';
import { loadGatewayConfig } from '../config/gateway-config.js';
import { createLogger } from '../observability/logger.js';
import { NO_REPORTER } from '../observability/no-reporter.js';
import { CliError } from './cli-error.js';
import { startDemoProvider, type DemoProvider } from './demo-provider.js';

const DEFAULT_PORT = 8080;
const CUSTOMER = 'demo';

const DEMO_POLICY = `# Written by \`govgate demo\`.
version: 1
mode: enforce
block_threshold: 70
customers:
  ${CUSTOMER}:
    models: ["gpt-4o-mini", "text-embedding-3-small"]
    operations: ["*"]
rules:
  - id: no-pii
    description: Personal data must not reach the provider
    when:
      metadata.contains_pii: true
    action: block
    reason: Requests marked contains_pii may not be sent to a model
`;

function demoConfig(port: number, providerUrl: string): string {
  return `# Written by \`govgate demo\`: a gateway in front of the demo's fake provider.
server:
  host: 127.0.0.1
  port: ${port}
providers:
  - name: demo
    base_url: ${providerUrl}
    models: ["*"]
policy:
  path: config/policy.yaml
audit:
  path: data/audit.db
log:
  level: warn
`;
}

/**
 * `demo [--port N]`: a fake provider and a gateway wired to it in a temporary
 * directory, so the walk-through works offline. Serves until SIGINT or SIGTERM,
 * then removes everything it created.
 */
export async function demoCommand(args: string[], out: NodeJS.WritableStream): Promise<void> {
  const { values } = parseArgs({ args, options: { port: { type: 'string' } }, strict: true });
  const port = values.port === undefined ? DEFAULT_PORT : Number(values.port);
  if (!/^\d{1,5}$/.test(values.port ?? '0') || port > 65535) throw new CliError(`--port must be a port number from 0 to 65535, got "${values.port}"`, 2);

  const dir = mkdtempSync(path.join(tmpdir(), 'govgate-demo-'));
  let provider: DemoProvider | undefined;
  let gateway: RunningGateway | undefined;
  try {
    provider = await startDemoProvider();
    mkdirSync(path.join(dir, 'config'));
    writeFileSync(path.join(dir, 'config/gateway.yaml'), demoConfig(port, provider.baseUrl));
    writeFileSync(path.join(dir, 'config/policy.yaml'), DEMO_POLICY);
    // The demo's own settings only: $PORT would override --port, and an admin token from the shell would turn on the dashboard.
    const env: NodeJS.ProcessEnv = { ...process.env, PORT: undefined, GOVGATE_ADMIN_TOKEN: undefined };
    const config = loadGatewayConfig('config/gateway.yaml', env, dir);

    const db = openDatabase(config.audit.path, { synchronous: config.audit.synchronous, retentionDays: config.audit.retentionDays });
    let key: string;
    try {
      key = createKey(db, CUSTOMER, 'demo').key;
    } finally {
      db.close();
    }

    try {
      gateway = await startGateway(config, { logger: createLogger(config.log.level), reporter: NO_REPORTER, env });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        throw new CliError(`port ${port} on 127.0.0.1 is already in use; pick another with --port N (0 for any free port)`);
      }
      throw err;
    }
    out.write(instructions(gateway.url, provider.baseUrl, key, dir, config.audit.path));
    await untilSignal();
  } finally {
    await gateway?.close();
    await provider?.close();
    rmSync(dir, { recursive: true, force: true });
  }
  out.write(`govgate demo stopped; removed ${dir}\n`);
}

function instructions(url: string, providerUrl: string, key: string, dir: string, auditPath: string): string {
  const request = `curl -s -w '\\nHTTP %{http_code}\\n' ${url}/v1/chat/completions -H 'Authorization: Bearer ${key}' -H 'Content-Type: application/json'`;
  const body = `-d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'`;
  return `govgate demo: a gateway on ${url} in front of a fake provider on ${providerUrl}; nothing leaves this machine.
Working directory: ${dir} (removed when the demo stops)
Key for customer "${CUSTOMER}": ${key}

1. An allowed chat completion (answered by the fake provider):
  ${request} ${body}

2. The same request marked as containing personal data, blocked with 403 by rule no-pii:
  ${request} -H 'X-Governance-Metadata: {"contains_pii":true}' ${body}

3. What the audit log recorded:
  sqlite3 ${shellWord(auditPath)} "select model, allowed, reason from usagelog"

An OpenAI SDK works too: OPENAI_BASE_URL=${url}/v1 OPENAI_API_KEY=${key}
Press Ctrl+C to stop.
`;
}

/** A path as one shell word; temporary directories rarely need quoting, so plain paths stay readable. */
function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
