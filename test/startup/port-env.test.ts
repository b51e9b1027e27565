import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { loadGatewayConfig } from '../../gateway/config/gateway-config.js';
import { makeGatewayDir } from '../helpers/gateway-harness.js';

function configWithPort(port: unknown): string {
  const dir = makeGatewayDir();
  writeFileSync(path.join(dir, 'config/gateway.yaml'), JSON.stringify({
    server: { host: '127.0.0.1', port },
    providers: [{ name: 'openai', base_url: 'http://127.0.0.1:9/v1', models: ['*'] }],
  }));
  return dir;
}

test('an invalid server.port is an error even when $PORT overrides it', (t) => {
  const dir = configWithPort(70000);
  try {
    const err = t.throws(() => loadGatewayConfig('config/gateway.yaml', { PORT: '8081' }, dir));
    t.regex(err?.message ?? '', /server\.port/);
    const wrongType = configWithPort('eighty');
    try {
      t.throws(() => loadGatewayConfig('config/gateway.yaml', { PORT: '8081' }, wrongType));
    } finally {
      rmSync(wrongType, { recursive: true, force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a valid server.port is still overridden by $PORT', (t) => {
  const dir = configWithPort(8080);
  try {
    t.is(loadGatewayConfig('config/gateway.yaml', { PORT: '8081' }, dir).server.port, 8081);
    t.is(loadGatewayConfig('config/gateway.yaml', {}, dir).server.port, 8080);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
