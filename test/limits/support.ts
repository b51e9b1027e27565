import { renameSync, writeFileSync } from 'node:fs';
import { sqliteJson } from '../helpers/sqlite-cli.js';

export const CHAT_BODY = JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 10 });
/** What CHAT_BODY reserves: its bytes / 4, rounded up, plus its max_tokens. */
export const CHAT_RESERVATION = Math.ceil(Buffer.byteLength(CHAT_BODY) / 4) + 10;

export function chat(baseUrl: string, key: string, body: string = CHAT_BODY, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...headers },
    body,
  });
}

/** Fires `n` requests at once (spread over the given gateways) and returns their statuses, bodies drained. */
export async function burst(baseUrls: readonly string[], key: string, n: number, body?: string, headers?: Record<string, string>): Promise<number[]> {
  return Promise.all(
    Array.from({ length: n }, async (_, i) => {
      const res = await chat(baseUrls[i % baseUrls.length]!, key, body, headers);
      await res.arrayBuffer();
      return res.status;
    }),
  );
}

export function countOf(statuses: readonly number[], status: number): number {
  return statuses.filter((s) => s === status).length;
}

export function setPolicy(file: string, text: string): void {
  // Renamed into place so the watcher never reads a half-written file.
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}

export function refusalRows(dbPath: string, customer: string): { allowed: number; reason: string }[] {
  if (!/^[a-z0-9-]+$/.test(customer)) throw new Error('test customer ids are plain');
  return sqliteJson(dbPath, `SELECT allowed, reason FROM usagelog WHERE customer_id = '${customer}' AND allowed = 0 ORDER BY created_at`);
}
