import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as zlib from 'node:zlib';

export interface SentryIngest {
  /** http://publickey@127.0.0.1:PORT/1 */
  dsn: string;
  /** Raw envelope bodies, decompressed if the request was gzip/deflate/br encoded. */
  envelopes: string[];
  /** Parsed payloads of every item of type "event" (plus legacy /store/ bodies), in arrival order. */
  events(): Record<string, unknown>[];
  /** Resolves once pred(events()) is true; polls every 50 ms, rejects after timeoutMs (default 5000). */
  waitFor(pred: (events: Record<string, unknown>[]) => boolean, timeoutMs?: number): Promise<void>;
  close(): Promise<void>;
}

interface EnvelopeItem {
  header: Record<string, unknown>;
  payload: Buffer;
}

type Received = { kind: 'envelope'; body: Buffer } | { kind: 'store'; body: Buffer };

const ENDPOINT = /^\/api\/[^/]+\/(envelope|store)\/?$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function decode(body: Buffer, encoding: string | undefined): Buffer {
  switch ((encoding ?? '').trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return zlib.gunzipSync(body);
    case 'deflate':
      return zlib.inflateSync(body);
    case 'br':
      return zlib.brotliDecompressSync(body);
    default:
      return body;
  }
}

function parseJsonObject(buf: Buffer): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(buf.toString('utf8'));
    return isObject(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Works on bytes, not characters: an item header's `length` counts UTF-8 bytes, and
 * attachment payloads may contain newlines or binary data.
 */
function parseEnvelopeItems(buf: Buffer): EnvelopeItem[] {
  let pos = 0;
  const readLine = (): Buffer => {
    const nl = buf.indexOf(0x0a, pos);
    const end = nl === -1 ? buf.length : nl;
    const line = buf.subarray(pos, end);
    pos = end + 1;
    return line;
  };

  readLine(); // envelope header
  const items: EnvelopeItem[] = [];
  while (pos < buf.length) {
    const headerLine = readLine();
    if (headerLine.length === 0) continue; // tolerate blank/trailing lines
    const header = parseJsonObject(headerLine);
    if (!header) break; // can't know where the next item starts
    let payload: Buffer;
    if (typeof header.length === 'number' && header.length >= 0) {
      payload = buf.subarray(pos, pos + header.length);
      pos += header.length;
      if (buf[pos] === 0x0a) pos++;
    } else {
      payload = pos < buf.length ? readLine() : Buffer.alloc(0);
    }
    items.push({ header, payload });
  }
  return items;
}

export async function startSentryIngest(): Promise<SentryIngest> {
  const envelopes: string[] = [];
  const receivedBodies: Received[] = [];
  const sockets = new Set<Socket>();

  const server = http.createServer((req, res) => {
    const pathname = (req.url ?? '/').split('?')[0] ?? '/';
    const match = ENDPOINT.exec(pathname);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('end', () => {
      if (req.method !== 'POST' || !match) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"detail":"not found"}');
        return;
      }
      let body: Buffer;
      try {
        body = decode(Buffer.concat(chunks), req.headers['content-encoding']);
      } catch (err) {
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ detail: `bad content-encoding: ${String(err)}` }));
        return;
      }
      if (match[1] === 'envelope') {
        envelopes.push(body.toString('utf8'));
        receivedBodies.push({ kind: 'envelope', body });
      } else {
        receivedBodies.push({ kind: 'store', body });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;

  const events = (): Record<string, unknown>[] => {
    const out: Record<string, unknown>[] = [];
    for (const r of receivedBodies) {
      if (r.kind === 'store') {
        const ev = parseJsonObject(r.body);
        if (ev) out.push(ev);
        continue;
      }
      for (const item of parseEnvelopeItems(r.body)) {
        if (item.header.type !== 'event') continue;
        const ev = parseJsonObject(item.payload);
        if (ev) out.push(ev);
      }
    }
    return out;
  };

  const itemTypes = (): string[] =>
    receivedBodies.flatMap((r) =>
      r.kind === 'store' ? ['store'] : parseEnvelopeItems(r.body).map((i) => String(i.header.type)),
    );

  return {
    dsn: `http://publickey@127.0.0.1:${port}/1`,
    envelopes,
    events,
    waitFor(pred, timeoutMs = 5000): Promise<void> {
      const deadline = Date.now() + timeoutMs;
      return new Promise<void>((resolve, reject) => {
        let lastError: unknown;
        const check = (): void => {
          try {
            if (pred(events())) {
              resolve();
              return;
            }
            lastError = undefined;
          } catch (err) {
            // A predicate that indexes into a still-empty list throws; treat it as "not yet".
            lastError = err;
          }
          if (Date.now() >= deadline) {
            const types = itemTypes();
            reject(
              new Error(
                `sentry-ingest waitFor timed out after ${timeoutMs} ms: ${events().length} event(s) in ` +
                  `${envelopes.length} envelope(s); item types seen: [${types.join(', ')}]` +
                  (lastError !== undefined ? `; predicate last threw: ${String(lastError)}` : ''),
              ),
            );
            return;
          }
          setTimeout(check, 50);
        };
        check();
      });
    },
    async close(): Promise<void> {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await closed;
    },
  };
}
