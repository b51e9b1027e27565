import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/catalogue.js';
import type { RequestFacts } from '../policy/request-facts.js';
import { checkedModel } from './model-name.js';
import { encodeMultipart, parseMultipart, readField, type MultipartPart } from './multipart.js';
import type { ModelSource, Operation } from './routes.js';
import { parseStrictJson } from './strict-json.js';

/** What the gateway read from a request: the facts it judges, and the body it will forward. */
export interface RequestReading {
  readonly model: string | null;
  readonly request: RequestFacts['request'];
  /** The parsed JSON body, for the stages that act on it (usage of streams, batch input files). */
  readonly json: Readonly<Record<string, unknown>> | null;
  /** The client's bytes, or the canonical re-encoding of its multipart form. */
  readonly body: Buffer;
  /** Set when the body was re-encoded: the Content-Type that goes with it. */
  readonly contentType: string | null;
  /** The file of an upload with `purpose=batch`: every line is judged before it is forwarded. */
  readonly batchFile: Buffer | null;
  /** The input file of a batch being created: only a file whose lines were judged may run. */
  readonly batchInputFile: string | null;
}

/** Every name a provider may read a token cap from; the policy holds the request to the largest. */
const TOKEN_CAP_FIELDS = ['max_tokens', 'max_completion_tokens', 'max_output_tokens'] as const;
/** Operations whose `n` asks for that many completions, each up to the cap. */
const CHOICE_OPERATIONS = new Set(['chat.completions', 'completions']);
/** Multipart fields the gateway reads; they are forwarded under exactly these names. */
const READ_FIELDS = ['model', 'purpose', 'file'] as const;

export function isMultipart(contentType: string | undefined): boolean {
  return mediaType(contentType) === 'multipart/form-data';
}

/**
 * Refuses what the gateway cannot read the way a lenient provider would before
 * the body is read: an encoded body (a provider may decode it and read a model
 * the gateway never saw), a header that says two things, a query that names
 * the model where the provider does not read it, or twice.
 */
export function checkRequestHead(operation: Operation, headers: IncomingHttpHeaders, rawHeaders: readonly string[], search: string): void {
  const encoding = headers['content-encoding']?.trim().toLowerCase();
  if (encoding !== undefined && encoding !== '' && encoding !== 'identity') {
    throw new GatewayError('unsupported_content_encoding', 'request bodies with a Content-Encoding are not accepted: send the body unencoded');
  }
  const transfer = headers['transfer-encoding']?.trim().toLowerCase();
  if (transfer !== undefined && transfer !== 'chunked') {
    throw new GatewayError('unsupported_content_encoding', 'only Transfer-Encoding: chunked is accepted');
  }
  const repeated = repeatedFramingHeader(rawHeaders);
  if (repeated) throw new GatewayError('invalid_request', `the ${repeated} header is sent more than once`);
  const models = queryModels(search);
  if (operation.model.in === 'query') {
    if (models.length !== 1) throw new GatewayError('invalid_request', 'the model query parameter must be given exactly once', { param: 'model' });
  } else if (operation.model.in !== 'none' && models.length > 0) {
    throw new GatewayError('invalid_request', 'the model query parameter is not read on this route: name the model in the body', { param: 'model' });
  } else if (models.length > 1) {
    // A filter (listing stored completions by model) is not judged, but two of them are read differently by frameworks.
    throw new GatewayError('invalid_request', 'the model query parameter is given more than once', { param: 'model' });
  }
}

/**
 * Reads the body the way the route's provider would, whatever its declared
 * type: a multipart form, or else one strict JSON object. Anything else, and a
 * model-bearing operation without a readable model, is refused.
 */
export async function readRequest(operation: Operation, contentType: string | undefined, search: string, body: Buffer): Promise<RequestReading> {
  if (operation.model.in === 'query') {
    if (body.length > 0) throw new GatewayError('invalid_request', 'this request carries no body');
    return plain(checkedModel(queryModels(search)[0], 'model'), body);
  }
  if (body.length === 0) {
    if (needsModel(operation.model)) throw missingModel(operation);
    if (operation.name === 'batches') batchInputFile({});
    return plain(null, body);
  }
  if (operation.body === 'none') throw new GatewayError('invalid_request', `${operation.method} requests carry no body`);
  if (isMultipart(contentType)) {
    if (operation.body !== 'multipart') throw new GatewayError('invalid_request', 'this route takes a JSON body, not a multipart form');
    return readForm(operation, contentType!, body);
  }
  if (operation.body === 'multipart') throw new GatewayError('invalid_request', 'this route takes a multipart/form-data body');
  if (!jsonCompatible(contentType)) throw new GatewayError('invalid_request', 'this route takes a JSON body: send Content-Type: application/json');
  const charset = parameter(contentType, 'charset');
  if (charset !== null && !/^utf-?8$/i.test(charset)) throw new GatewayError('invalid_request', 'JSON bodies must be UTF-8');
  return readJson(operation, body);
}

function readJson(operation: Operation, body: Buffer): RequestReading {
  const json = parseStrictJson(body);
  if (operation.name === 'uploads') refuseBatchUpload(json);
  let model: string | null = null;
  if (operation.model.in === 'json') {
    const found = at(json, operation.model.path);
    const param = operation.model.path.join('.');
    if (found !== undefined && found !== null) model = checkedModel(found, param);
    else if (operation.model.required) throw missingModel(operation);
  }
  return {
    model,
    request: jsonFacts(operation.name, json, body.length),
    json,
    body,
    contentType: null,
    batchFile: null,
    batchInputFile: operation.name === 'batches' ? batchInputFile(json) : null,
  };
}

/** The content-free facts of a JSON body; a `stream`, cap or `n` of the wrong type is refused rather than ignored. */
export function jsonFacts(operation: string, json: Readonly<Record<string, unknown>>, bodyBytes: number): RequestFacts['request'] {
  const cap = tokenCap(json);
  return {
    stream: flag(json, 'stream'),
    max_tokens: cap !== null && CHOICE_OPERATIONS.has(operation) ? cap * choices(json) : cap,
    messages: Array.isArray(json.messages) ? json.messages.length : Array.isArray(json.input) ? json.input.length : null,
    tools: Array.isArray(json.tools) ? json.tools.length : null,
    body_bytes: bodyBytes,
  };
}

async function readForm(operation: Operation, contentType: string, body: Buffer): Promise<RequestReading> {
  const parts = await parseMultipart(contentType, body);
  const modelField = readField(parts, 'model');
  const model = modelField === null ? null : checkedModel(modelField, 'model');
  if (model === null && needsModel(operation.model)) throw missingModel(operation);
  const purpose = readField(parts, 'purpose');
  let batchFile: Buffer | null = null;
  if (operation.name === 'files' && purpose === 'batch') {
    const files = parts.filter((p) => p.name.toLowerCase() === 'file');
    if (files.length !== 1) throw new GatewayError('invalid_request', 'a batch upload must carry exactly one file', { param: 'file' });
    batchFile = files[0]!.data;
  }
  const encoded = encodeMultipart(parts.map(canonicalName));
  return {
    model,
    request: { stream: false, max_tokens: null, messages: null, tools: null, body_bytes: body.length },
    json: null,
    body: encoded.body,
    contentType: encoded.contentType,
    batchFile,
    batchInputFile: null,
  };
}

/** A field the gateway read goes on under the name it was read as, whatever its case was. */
function canonicalName(part: MultipartPart): MultipartPart {
  const lower = part.name.toLowerCase();
  const read = READ_FIELDS.find((f) => f === lower);
  return read && read !== part.name ? { ...part, name: read } : part;
}

function plain(model: string | null, body: Buffer): RequestReading {
  return {
    model,
    request: { stream: false, max_tokens: null, messages: null, tools: null, body_bytes: body.length },
    json: null,
    body,
    contentType: null,
    batchFile: null,
    batchInputFile: null,
  };
}

function batchInputFile(json: Readonly<Record<string, unknown>>): string {
  const id = json.input_file_id;
  if (typeof id !== 'string' || id === '') throw new GatewayError('invalid_request', 'input_file_id must name a file', { param: 'input_file_id' });
  return id;
}

/** Large files come in parts through the Uploads API, which the gateway cannot read line by line. */
function refuseBatchUpload(json: Readonly<Record<string, unknown>>): void {
  if (json.purpose === 'batch') {
    throw new GatewayError('policy_blocked', 'batch input files must be uploaded with POST /v1/files (at most server.max_upload_bytes), where the gateway checks every line; the Uploads API is not accepted for purpose=batch');
  }
}

function needsModel(source: ModelSource): boolean {
  return source.in === 'form' || (source.in === 'json' && source.required);
}

function missingModel(operation: Operation): GatewayError {
  const where = operation.model.in === 'json' ? operation.model.path.join('.') : 'model';
  return new GatewayError('invalid_request', `${operation.name} requests must name their model (${where}): the gateway judges the model the provider will use`, { param: where });
}

function at(json: Readonly<Record<string, unknown>>, path: readonly string[]): unknown {
  let value: unknown = json;
  for (const key of path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
    value = Object.hasOwn(value, key) ? (value as Record<string, unknown>)[key] : undefined;
  }
  return value;
}

function flag(json: Readonly<Record<string, unknown>>, name: string): boolean {
  const value = json[name];
  if (value === undefined || value === null) return false;
  if (typeof value !== 'boolean') throw new GatewayError('invalid_request', `${name} must be true or false`, { param: name });
  return value;
}

function choices(json: Readonly<Record<string, unknown>>): number {
  const n = json.n;
  if (n === undefined || n === null) return 1;
  if (!Number.isSafeInteger(n) || (n as number) < 1) throw new GatewayError('invalid_request', 'n must be a positive integer', { param: 'n' });
  return n as number;
}

/** The largest cap the body states; a cap that is not a whole number is refused rather than ignored. */
function tokenCap(json: Readonly<Record<string, unknown>>): number | null {
  let cap: number | null = null;
  for (const field of TOKEN_CAP_FIELDS) {
    const value = json[field];
    if (value === undefined || value === null) continue;
    if (!Number.isSafeInteger(value) || (value as number) < 0) {
      throw new GatewayError('invalid_request', `${field} must be a non-negative integer`, { param: field });
    }
    cap = cap === null ? (value as number) : Math.max(cap, value as number);
  }
  return cap;
}

/** Every value of a query parameter a provider could read as `model`: names percent-decoded, any case. */
function queryModels(search: string): string[] {
  if (search.length < 2) return [];
  const values: string[] = [];
  for (const [name, value] of new URLSearchParams(search)) if (name.toLowerCase() === 'model') values.push(value);
  return values;
}

/** Headers that say how to read the body: Node keeps the first of two, a provider may take the last. */
const FRAMING_HEADERS = ['content-type', 'content-encoding', 'transfer-encoding'] as const;

/** The first framing header sent more than once, in one pass over the raw header list. */
function repeatedFramingHeader(rawHeaders: readonly string[]): string | null {
  const seen = new Set<string>();
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (!(FRAMING_HEADERS as readonly string[]).includes(name)) continue;
    if (seen.has(name)) return name;
    seen.add(name);
  }
  return null;
}

/**
 * The declared types a JSON body may carry. A form or line-delimited type is
 * refused even when the body is JSON: a provider may read the body as that type.
 */
function jsonCompatible(contentType: string | undefined): boolean {
  const type = mediaType(contentType);
  return type === '' || type === 'application/json' || type === 'text/plain' || (type.startsWith('application/') && type.endsWith('+json'));
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
}

function parameter(contentType: string | undefined, name: string): string | null {
  if (!contentType) return null;
  for (const param of contentType.split(';').slice(1)) {
    const eq = param.indexOf('=');
    if (eq !== -1 && param.slice(0, eq).trim().toLowerCase() === name) return param.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
  }
  return null;
}
