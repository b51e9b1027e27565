import { GatewayError } from '../errors/catalogue.js';
import type { RequestFacts } from '../policy/request-facts.js';
import { checkedModel } from './model-name.js';
import { jsonFacts } from './read-request.js';
import { matchRoute } from './routes.js';
import { parseStrictJson } from './strict-json.js';

/** One request of a batch input file, as the provider will run it. */
export interface BatchLine {
  /** 1-based, as editors count. */
  readonly line: number;
  readonly operation: string;
  readonly model: string;
  readonly request: RequestFacts['request'];
}

/**
 * Reads a batch input file (JSONL: `{"custom_id","method","url","body"}` per
 * line) into the requests the provider will run. A line that cannot be read
 * the way the provider reads it refuses the whole file, naming the line.
 */
export function* batchLines(file: Buffer): Generator<BatchLine> {
  let start = 0;
  let line = 0;
  while (start < file.length) {
    let end = file.indexOf(0x0a, start);
    if (end === -1) end = file.length;
    line++;
    const text = file.subarray(start, end > start && file[end - 1] === 0x0d ? end - 1 : end);
    start = end + 1;
    if (text.length === 0) continue;
    yield readLine(text, line);
  }
}

function readLine(text: Buffer, line: number): BatchLine {
  let request: Record<string, unknown>;
  try {
    request = parseStrictJson(text);
  } catch (err) {
    throw lineError(line, err instanceof GatewayError ? err.message : 'is not a JSON object');
  }
  const { method, url, body } = request;
  if (method !== 'POST') throw lineError(line, 'method must be POST');
  if (typeof url !== 'string' || !url.startsWith('/v1/') || url.includes('?')) throw lineError(line, 'url must be a /v1/ path without a query');
  const route = matchRoute('POST', url);
  if (route.kind !== 'operation' || route.operation.model.in !== 'json' || route.operation.model.path.length !== 1) {
    throw lineError(line, 'url is not an operation a batch can run');
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw lineError(line, 'body must be a JSON object');
  const fields = body as Record<string, unknown>;
  const operation = route.operation.name;
  try {
    return { line, operation, model: checkedModel(fields.model, 'body.model'), request: jsonFacts(operation, fields, text.length) };
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err;
    throw lineError(line, err.message);
  }
}

function lineError(line: number, problem: string): GatewayError {
  return new GatewayError('invalid_request', `batch input file line ${line}: ${problem}`, { param: 'file' });
}

/** The requests in a batch file (its non-empty lines), counted without reading them again. */
export function countLines(file: Buffer): number {
  let lines = 0;
  let start = 0;
  while (start < file.length) {
    let end = file.indexOf(0x0a, start);
    if (end === -1) end = file.length;
    if (end > start && !(end === start + 1 && file[start] === 0x0d)) lines++;
    start = end + 1;
  }
  return lines;
}
