import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The benchmark's mock OpenAI upstream: as cheap as a server can be, so that
 * the arms differ only by what sits between client and upstream. It answers
 * chat completions at once; `stream: true` bodies get SSE_CHUNKS events
 * SSE_GAP_MS apart; an `x-bench-delay-ms` header delays the answer.
 */
const SSE_CHUNKS = 64;
const SSE_GAP_MS = 20;

const COMPLETION = Buffer.from(JSON.stringify({
  id: 'chatcmpl-bench', object: 'chat.completion', created: 0, model: 'gpt-4o-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 250, completion_tokens: 1, total_tokens: 251 },
}));

/** Each event carries its send time on the machine-wide monotonic clock, so the client can compute its delivery latency. */
function chunk(i: number): string {
  return `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"gpt-4o-mini","sent_ns":${process.hrtime.bigint()},"choices":[{"index":0,"delta":{"content":"t${i}"},"finish_reason":null}]}\n\n`;
}

function stream(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  let i = 0;
  const timer = setInterval(() => {
    if (i < SSE_CHUNKS) {
      res.write(chunk(i++));
      return;
    }
    clearInterval(timer);
    res.end('data: [DONE]\n\n');
  }, SSE_GAP_MS);
  res.on('close', () => clearInterval(timer));
}

function handle(req: IncomingMessage, res: ServerResponse, body: Buffer): void {
  const delay = Number(req.headers['x-bench-delay-ms'] ?? 0);
  const answer = () => {
    // A cheap test, not a parse: the arms must not differ by the mock's work.
    if (body.includes('"stream":true')) return stream(res);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': COMPLETION.length });
    res.end(COMPLETION);
  };
  if (delay > 0) setTimeout(answer, delay);
  else answer();
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => handle(req, res, Buffer.concat(chunks)));
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
