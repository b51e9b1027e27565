import { isDeepStrictEqual } from 'node:util';
import * as http from 'node:http';
import test from 'ava';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { ConfigError } from '../../gateway/config/yaml-source.js';
import { ERROR_CATALOGUE, GatewayError } from '../../gateway/errors/catalogue.js';
import { parseGovernanceMetadata, toMetadata } from '../../gateway/facts/governance-metadata.js';
import { checkRequestHead, readRequest, type RequestReading } from '../../gateway/facts/read-request.js';
import { catalogue, matchRoute, type Operation, type RouteMatch } from '../../gateway/facts/routes.js';
import { compilePolicySource } from '../../gateway/policy/compile-policy.js';
import { evaluate } from '../../gateway/policy/evaluate.js';
import type { CompiledPolicy } from '../../gateway/policy/policy-types.js';
import type { MetadataValue, RequestFacts } from '../../gateway/policy/request-facts.js';
import { FIXTURE_POLICY } from '../helpers/gateway-harness.js';
import {
  bodyBytes,
  brokenFormCase,
  formCase,
  metadataCase,
  multipartCase,
  nonMultipartContentType,
  objectText,
  querySearch,
  requestJsonText,
  validMetadataEntries,
} from './arbitraries.js';
import { headerValue, isObject, oddCase, ProcessFaults, token } from './support.js';

/**
 * In-process fuzzing of the pure stages every request goes through: reading
 * the request (route, head, body), governance metadata, policy compilation
 * and evaluation. Client input may only ever be refused with a GatewayError
 * of a 4xx code and a policy file only with a ConfigError; anything else
 * escaping these functions would surface as a 500 or a crashed reload.
 *
 * Budget (fixed seeds, so a CI failure replays locally):
 *   readRequest           4,000 (any route, type, bytes) + 2,000 (JSON agreement) + 2,000 (multipart agreement)
 *                         + 2,000 (truncated and malformed multipart)
 *   checkRequestHead      2,000 (query strings and header sets, with the realtime query model)
 *   metadata              3,000
 *   matchRoute            1,500 (arbitrary paths) + 500 (catalogue routes, ids and case variants)
 *   compilePolicySource   3,000 (random and mutated text) + 40 (deep nesting) + 1,000 (schema-valid) + 300 (mapping spellings)
 *   total                21,340 cases; the HTTP suite (gateway-http.test.ts) adds 11,500.
 */

const SEED = 20261127;
/** Every property runs from a fixed seed; a failure report carries the error, the seed and the shrunk input. */
const RUN = { includeErrorInReport: true } as const;
const NAME = 'fuzz-policy.yaml';

// ---------------------------------------------------------------------------
// Reading requests

/** Refusals client input may get from the request readers: anything else (a TypeError, a 500 code) is a crash in production. */
const REFUSALS = new Set<string>(['invalid_request', 'unsupported_content_encoding', 'policy_blocked']);

function shown(contentType: string | undefined, body: Buffer): string {
  return JSON.stringify({ contentType, body: body.toString('latin1').slice(0, 600) });
}

/** A thrown value, if it is a refusal client input may get; anything else fails the property with what it was. */
function asRefusal(err: unknown, what: string): GatewayError {
  if (err instanceof GatewayError) {
    if (!REFUSALS.has(err.code) || err.status !== ERROR_CATALOGUE[err.code].status) throw new Error(`refusal with ${err.code}/${err.status}: ${what}`);
    return err;
  }
  throw new Error(`threw a ${(err as Error)?.constructor?.name}: ${String(err)}: ${what}`);
}

/** Runs readRequest, letting only a refusal through. */
async function read(operation: Operation, contentType: string | undefined, search: string, body: Buffer): Promise<RequestReading | GatewayError> {
  try {
    return await readRequest(operation, contentType, search, body);
  } catch (err) {
    return asRefusal(err, `readRequest ${operation.method} ${operation.name} ${search} ${shown(contentType, body)}`);
  }
}

const MODEL_NAME = /^[\x21-\x7e]{1,256}$/;
const MULTIPART_TYPE = /^multipart\/form-data; boundary=[A-Za-z0-9'()+_,./:=?-]{1,70}$/;

const isCount = (n: unknown): boolean => n === null || (typeof n === 'number' && Number.isInteger(n) && n >= 0);

/** What every accepted reading must look like, whatever was sent. */
function assertSaneReading(operation: Operation, r: RequestReading, body: Buffer, what: string): void {
  const fail = (problem: string) => {
    throw new Error(`${problem}: ${operation.method} ${operation.name} ${what}`);
  };
  if (r.model !== null && (typeof r.model !== 'string' || !MODEL_NAME.test(r.model))) fail(`model fact ${JSON.stringify(r.model)}`);
  // A form's model field is read (and judged) on every upload route; JSON bodies only where the provider reads one.
  if (operation.model.in === 'none' && operation.body !== 'multipart' && r.model !== null) fail(`a model (${JSON.stringify(r.model)}) read on a route that carries none`);
  const required = operation.model.in === 'form' || operation.model.in === 'query' || (operation.model.in === 'json' && operation.model.required);
  if (required && r.model === null) fail('a model-bearing operation accepted without a model');
  const q = r.request;
  if (typeof q.stream !== 'boolean') fail('stream fact is not a boolean');
  if (!isCount(q.max_tokens) || !isCount(q.messages) || !isCount(q.tools)) fail(`count facts ${JSON.stringify(q)}`);
  if (q.body_bytes !== body.length) fail(`body_bytes ${q.body_bytes} for ${body.length} bytes`);
  if (!Buffer.isBuffer(r.body)) fail('the body to forward is not a Buffer');
  if (r.contentType === null ? !r.body.equals(body) : !MULTIPART_TYPE.test(r.contentType)) fail(`forwards other bytes (content type ${JSON.stringify(r.contentType)})`);
  if (r.json !== null && !isObject(r.json)) fail('json is not an object');
  if (r.batchFile !== null && operation.name !== 'files') fail('a batch file outside POST /v1/files');
  if (operation.name === 'batches' ? typeof r.batchInputFile !== 'string' || r.batchInputFile === '' : r.batchInputFile !== null) fail(`batchInputFile ${JSON.stringify(r.batchInputFile)}`);
}

/** Every route of the catalogue, each method on its own. */
const ENTRIES = catalogue();
const CATALOGUE_NAMES = new Set(ENTRIES.map((e) => e.operation.name));
const byOperation = (keep: (o: Operation) => boolean) => ENTRIES.filter((e) => keep(e.operation));

/** Resource ids as clients send them: never a route word, so the path names the catalogue entry it was built from. */
const idSegment = fc.oneof(fc.constantFrom('file-abc123', 'chatcmpl-1', 'ftjob-XYZ', '0babbage', 'ft:gpt-4o:acme::x1'), fc.stringMatching(/^[0-9][A-Za-z0-9._~:-]{0,23}$/));

interface Route {
  readonly template: string;
  readonly path: string;
  readonly operation: Operation;
}

/** A catalogue entry made concrete, and the operation matchRoute names for it (which must be the entry's). */
function routeOf(entries: readonly { path: string; operation: Operation }[]): fc.Arbitrary<Route> {
  return fc.tuple(fc.constantFrom(...entries), fc.array(idSegment, { minLength: 4, maxLength: 4 }), fc.boolean()).map(([entry, ids, slash]) => {
    let i = 0;
    const path = entry.path.replace(/\{id\}/g, () => ids[i++]!) + (slash ? '/' : '');
    const match = matchRoute(entry.operation.method, path);
    if (match.kind !== 'operation' || match.operation.name !== entry.operation.name) {
      throw new Error(`${entry.operation.method} ${path} (${entry.path}) matched ${JSON.stringify(match)}`);
    }
    return { template: entry.path, path, operation: match.operation };
  });
}

const modelBearing = byOperation((o) => o.model.in !== 'none');
const anyRoute = fc.oneof({ weight: 2, arbitrary: routeOf(modelBearing) }, routeOf(ENTRIES));
const jsonRoute = fc.oneof({ weight: 3, arbitrary: routeOf(byOperation((o) => o.body === 'json' && o.model.in === 'json')) }, routeOf(byOperation((o) => o.body === 'json')));
const formRoute = fc.oneof({ weight: 3, arbitrary: routeOf(byOperation((o) => o.model.in === 'form')) }, routeOf(byOperation((o) => o.body === 'multipart')));

const multipartLabels = fc.constantFrom('multipart/form-data', 'multipart/form-data; boundary=', 'multipart/form-data; boundary=""', 'multipart/form-data; boundary=abc', 'Multipart/Form-Data; boundary=abc');

const contentTypeAndBody: fc.Arbitrary<[string | undefined, Buffer]> = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(nonMultipartContentType, bodyBytes) },
  { weight: 3, arbitrary: fc.tuple(nonMultipartContentType, requestJsonText.map((s) => Buffer.from(s))) },
  multipartCase.map((c): [string, Buffer] => [c.contentType, c.body]),
  formCase.map((c): [string, Buffer] => [c.contentType, c.body]),
  brokenFormCase.map((c): [string, Buffer] => [c.contentType, c.body]),
  // A multipart label on a body that is not multipart.
  fc.tuple(multipartLabels, bodyBytes),
);

test('readRequest: any route, content type, query and bytes yield sane facts or a 400/403/415 refusal, never another exception', async (t) => {
  let accepted = 0;
  await fc.assert(
    fc.asyncProperty(anyRoute, contentTypeAndBody, querySearch, async ({ operation }, [contentType, body], search) => {
      const result = await read(operation, contentType, search, body);
      if (result instanceof GatewayError) return;
      accepted++;
      assertSaneReading(operation, result, body, `${search} ${shown(contentType, body)}`);
    }),
    { ...RUN, seed: SEED, numRuns: 4000 },
  );
  t.log(`${accepted} of 4000 accepted`);
  t.true(accepted > 200, `only ${accepted} of 4000 accepted: the property barely runs`);
});

/** Header names Node keeps only the first of when a request repeats them (the rest it joins with ", "). */
const FIRST_WINS = new Set(['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since', 'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent']);

/** req.headers as Node builds it from the raw header list. */
function nodeHeaders(raw: readonly (readonly [string, string])[]): http.IncomingHttpHeaders {
  const headers: Record<string, string> = {};
  for (const [name, value] of raw) {
    const key = name.toLowerCase();
    if (!Object.hasOwn(headers, key)) headers[key] = value;
    else if (!FIRST_WINS.has(key)) headers[key] += `, ${value}`;
  }
  return headers;
}

const encodingValue = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('identity', 'IDENTITY', 'Identity', 'gzip', 'deflate', 'br', 'zstd', 'x-gzip', 'identity, gzip', 'gzip, identity', '*') },
  headerValue(20),
);
const transferValue = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('chunked', 'Chunked', 'CHUNKED', 'gzip', 'gzip, chunked', 'chunked, gzip', 'identity', 'compress') },
  headerValue(20),
);

/** A request's header list: noise, and zero, one or two of each header the head check reads, in any casing. */
const headerList: fc.Arbitrary<[string, string][]> = fc
  .tuple(
    fc.array(fc.tuple(token(20), headerValue(40)), { maxLength: 5 }),
    fc.array(fc.tuple(oddCase('content-type'), fc.constantFrom('application/json', 'text/plain', 'multipart/form-data; boundary=x')), { maxLength: 2 }),
    fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, fc.array(fc.tuple(oddCase('content-encoding'), encodingValue), { minLength: 1, maxLength: 2 })),
    fc.oneof({ weight: 3, arbitrary: fc.constant([]) }, fc.array(fc.tuple(oddCase('transfer-encoding'), transferValue), { minLength: 1, maxLength: 2 })),
  )
  .chain(([noise, types, encodings, transfers]) => fc.shuffledSubarray([...noise, ...types, ...encodings, ...transfers], { minLength: noise.length + types.length + encodings.length + transfers.length }));

/** Every name a query gives that a WHATWG URL parser (and so a provider) reads as `model`, with its value. */
function queryModels(search: string): string[] {
  return [...new URLSearchParams(search)].filter(([name]) => name.toLowerCase() === 'model').map(([, value]) => value);
}

test('checkRequestHead: any header set and query is accepted exactly when it follows the rules (no body encoding, each framing header once, the model query only where read, once); refused with 400/415 only', async (t) => {
  const queryRoutes = routeOf(byOperation((o) => o.model.in === 'query'));
  let accepted = 0;
  let queryModelsRead = 0;
  await fc.assert(
    fc.asyncProperty(fc.oneof(anyRoute, queryRoutes), headerList, querySearch, async ({ operation }, raw, search) => {
      const rawHeaders = raw.flat();
      const headers = nodeHeaders(raw);
      const what = `${operation.method} ${operation.name} ${search} ${JSON.stringify(raw)}`;
      let refused: GatewayError | null = null;
      try {
        checkRequestHead(operation, headers, rawHeaders, search);
      } catch (err) {
        refused = asRefusal(err, `checkRequestHead ${what}`);
      }
      const encoding = headers['content-encoding']?.trim().toLowerCase();
      const transfer = typeof headers['transfer-encoding'] === 'string' ? headers['transfer-encoding'].trim().toLowerCase() : undefined;
      const encoded = (encoding !== undefined && encoding !== '' && encoding !== 'identity') || (transfer !== undefined && transfer !== 'chunked');
      const repeated = ['content-type', 'content-encoding', 'transfer-encoding'].some((name) => raw.filter(([n]) => n.toLowerCase() === name).length > 1);
      const models = queryModels(search);
      // The model query is the model only where the route reads it there; elsewhere one is a filter (listing stored completions), two are ambiguous.
      const badQuery = operation.model.in === 'query' ? models.length !== 1 : operation.model.in !== 'none' ? models.length > 0 : models.length > 1;
      if (refused === null) {
        if (encoded || repeated || badQuery) throw new Error(`accepted (encoded ${encoded}, repeated ${repeated}, model query ${JSON.stringify(models)}): ${what}`);
        accepted++;
      } else if (refused.code === 'unsupported_content_encoding' ? !encoded : refused.code !== 'invalid_request' || !(repeated || badQuery)) {
        throw new Error(`refused with ${refused.code} (${refused.message}) though encoded ${encoded}, repeated ${repeated}, model query ${JSON.stringify(models)}: ${what}`);
      }
      if (refused !== null || operation.model.in !== 'query') return;
      // The realtime handshake: the model is the one query value, judged as a model name, and nothing else is read.
      const reading = await read(operation, headers['content-type'], search, Buffer.alloc(0));
      if (reading instanceof GatewayError ? MODEL_NAME.test(models[0]!) : reading.model !== models[0]) {
        throw new Error(`query model ${JSON.stringify(models[0])} read as ${reading instanceof GatewayError ? reading.code : JSON.stringify(reading.model)}: ${what}`);
      }
      if (!((await read(operation, undefined, search, Buffer.from('{}'))) instanceof GatewayError)) throw new Error(`a body on the realtime handshake accepted: ${what}`);
      queryModelsRead++;
    }),
    { ...RUN, seed: SEED + 10, numRuns: 2000 },
  );
  t.log(`${accepted} of 2000 accepted, ${queryModelsRead} of them realtime handshakes whose query model was read`);
  t.true(accepted > 200, `only ${accepted} of 2000 accepted: the property barely runs`);
});

/** The first duplicate key (after unescaping) of any object in valid JSON text, or null. */
function duplicateKey(text: string): string | null {
  const open: (Set<string> | null)[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{') open.push(new Set());
    else if (c === '[') open.push(null);
    else if (c === '}' || c === ']') open.pop();
    else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      let k = j + 1;
      while (text[k] === ' ' || text[k] === '\t' || text[k] === '\n' || text[k] === '\r') k++;
      if (text[k] === ':') {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        const keys = open.at(-1)!;
        if (keys.has(key)) return key;
        keys.add(key);
      }
      i = j;
    }
  }
  return null;
}

/** The bytes as JSON.parse reads them: UTF-8 without replacement, a BOM kept (JSON.parse refuses it). Undefined when it refuses. */
function jsonParse(body: Buffer): { value: unknown; text: string } | undefined {
  try {
    const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body);
    return { value: JSON.parse(text) as unknown, text };
  } catch {
    return undefined;
  }
}

function valueAt(o: Record<string, unknown>, path: readonly string[]): unknown {
  let value: unknown = o;
  for (const key of path) value = isObject(value) && Object.hasOwn(value, key) ? value[key] : undefined;
  return value;
}

const CHOICE_OPERATIONS = new Set(['chat.completions', 'completions']);

test('JSON bodies: what readRequest accepts JSON.parse reads without duplicate keys, and its model, token cap (× n), stream flag and message count are what JSON.parse reads', async (t) => {
  let accepted = 0;
  await fc.assert(
    fc.asyncProperty(
      jsonRoute,
      nonMultipartContentType,
      fc.oneof({ weight: 3, arbitrary: requestJsonText.map((s) => Buffer.from(s)) }, bodyBytes),
      async ({ operation }, contentType, body) => {
        const result = await read(operation, contentType, '', body);
        if (result instanceof GatewayError || body.length === 0) return;
        accepted++;
        const what = `${operation.name} ${shown(contentType, body)}`;
        const parsed = jsonParse(body);
        if (parsed === undefined) throw new Error(`accepted a body JSON.parse refuses: ${what}`);
        if (!isObject(parsed.value)) throw new Error(`accepted JSON that is not an object: ${what}`);
        const duplicate = duplicateKey(parsed.text);
        if (duplicate !== null) throw new Error(`accepted a body with the key ${JSON.stringify(duplicate)} twice: ${what}`);
        const o = parsed.value;
        const model = operation.model.in === 'json' ? valueAt(o, operation.model.path) : undefined;
        if (result.model !== (model ?? null)) throw new Error(`JSON.parse reads model ${JSON.stringify(model)}, policy saw ${JSON.stringify(result.model)}: ${what}`);
        const caps = ['max_tokens', 'max_completion_tokens', 'max_output_tokens'].map((f) => o[f]).filter((v) => v !== undefined && v !== null) as number[];
        const n = CHOICE_OPERATIONS.has(operation.name) && typeof o.n === 'number' ? o.n : 1;
        const cap = caps.length === 0 ? null : Math.max(...caps) * n;
        if (result.request.max_tokens !== cap) throw new Error(`JSON.parse reads a cap of ${cap} (caps ${caps}, n ${n}), policy saw ${result.request.max_tokens}: ${what}`);
        if (result.request.stream !== (o.stream === true)) throw new Error(`JSON.parse reads stream ${JSON.stringify(o.stream)}, policy saw ${result.request.stream}: ${what}`);
        const messages = Array.isArray(o.messages) ? o.messages.length : Array.isArray(o.input) ? o.input.length : null;
        if (result.request.messages !== messages) throw new Error(`${messages} messages, policy counted ${result.request.messages}: ${what}`);
        if (result.request.tools !== (Array.isArray(o.tools) ? o.tools.length : null)) throw new Error(`policy counted ${result.request.tools} tools: ${what}`);
        if (!isDeepStrictEqual(result.json, o)) throw new Error(`the parsed body handed on differs from JSON.parse's: ${what}`);
      },
    ),
    { ...RUN, seed: SEED + 1, numRuns: 2000 },
  );
  t.log(`${accepted} of 2000 accepted`);
  t.true(accepted > 400, `only ${accepted} of 2000 accepted: the property barely runs`);
});

type FormEntry = { readonly name: string; readonly value: string } | { readonly name: string; readonly filename: string; readonly type: string; readonly bytes: Buffer };

/** What the WHATWG form-data parser (undici's, in Node) reads from a body, entry by entry; null when it refuses the body. */
async function whatwgForm(contentType: string, body: Buffer): Promise<FormEntry[] | null> {
  let form: FormData;
  try {
    form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
  } catch {
    return null;
  }
  const entries: FormEntry[] = [];
  for (const [name, value] of form) {
    entries.push(typeof value === 'string' ? { name, value } : { name, filename: value.name, type: value.type, bytes: Buffer.from(await value.arrayBuffer()) });
  }
  return entries;
}

const READ_FIELDS = new Set(['model', 'purpose', 'file']);

/** The name a field the gateway reads goes on under: its own, lowercased. */
const canonical = (name: string) => (READ_FIELDS.has(name.toLowerCase()) ? name.toLowerCase() : name);

function describeEntries(entries: readonly FormEntry[]): string {
  return JSON.stringify(entries.map((e) => ('value' in e ? [e.name, e.value] : [e.name, e.filename, e.type, e.bytes.toString('latin1')])));
}

/** The one model field (names in any case) of a form as the WHATWG parser reads it; more than one is an error. */
function formModel(entries: readonly FormEntry[], what: string): string | null {
  const models = entries.filter((e) => e.name.toLowerCase() === 'model');
  if (models.length > 1) throw new Error(`${models.length} model fields: ${what}`);
  return models[0] === undefined ? null : 'value' in models[0] ? models[0].value : models[0].bytes.toString('utf8');
}

/**
 * The policy must judge the model the provider will serve, and the provider
 * must read the form the gateway read. When readRequest accepts a multipart
 * upload, the WHATWG parser reads the client's body as a form with at most one
 * model field (names in any case), the model the gateway returns is that
 * field's value, and the re-encoded body it forwards parses to the same
 * entries (the fields it reads renamed to lowercase) and is not JSON.
 *
 * The WHATWG parser (undici) refuses a preamble and an epilogue, which RFC
 * 2046 allows and busboy reads; for such a body (`mustParse` false) only the
 * forwarded form can be compared: the provider reads that one, and its one
 * model field must be the model judged. Returns whether the upload was accepted.
 */
async function assertMultipartAgreement(operation: Operation, contentType: string, body: Buffer, mustParse = true): Promise<boolean> {
  const result = await read(operation, contentType, '', body);
  if (result instanceof GatewayError) return false;
  const what = `${operation.name} ${shown(contentType, body)}`;
  if (body.length === 0) return true;
  if (result.contentType === null) throw new Error(`a form forwarded without its new Content-Type: ${what}`);
  if (jsonParse(result.body) !== undefined) throw new Error(`the re-encoded form parses as JSON: ${what}`);
  const original = await whatwgForm(contentType, body);
  if (original === null && mustParse) throw new Error(`accepted a form the WHATWG parser refuses: ${what}`);
  const forwarded = await whatwgForm(result.contentType, result.body);
  if (forwarded === null) {
    // busboy reads a close delimiter alone as a form of no parts, which RFC 2046 and the WHATWG parser do not allow;
    // harmless so long as nothing was read from it and nothing but an empty form goes on.
    const empty = result.body.equals(Buffer.from(`--${result.contentType.split('boundary=')[1]}--\r\n`));
    if (result.model !== null || !empty || (original !== null && original.length > 0)) throw new Error(`the re-encoded form does not parse: ${what}\nforwarded ${shown(result.contentType, result.body)}`);
    return true;
  }
  const judged = (source: string, entries: readonly FormEntry[]) => {
    const model = formModel(entries, `${source}, policy saw ${JSON.stringify(result.model)}: ${what}`);
    if (result.model !== model) throw new Error(`the provider reads model ${JSON.stringify(model)} from the ${source}, policy saw ${JSON.stringify(result.model)}: ${what}`);
  };
  judged('forwarded form', forwarded);
  if (original === null) return true;
  judged("client's form", original);
  const expected = original.map((e) => ({ ...e, name: canonical(e.name) }));
  if (!isDeepStrictEqual(forwarded, expected)) throw new Error(`the provider reads ${describeEntries(forwarded)}, the client sent ${describeEntries(expected)}: ${what}`);
  return true;
}

test('multipart uploads: the model the policy sees is the one model field the WHATWG parser reads, and the re-encoded body parses to the same fields', async (t) => {
  let accepted = 0;
  await fc.assert(
    fc.asyncProperty(
      formRoute,
      fc.oneof({ weight: 2, arbitrary: formCase }, multipartCase.map((c) => ({ ...c, plain: false }))),
      async ({ operation }, { contentType, body, plain }) => {
        if (await assertMultipartAgreement(operation, contentType, body, plain)) accepted++;
      },
    ),
    { ...RUN, seed: SEED + 2, numRuns: 2000 },
  );
  t.log(`${accepted} of 2000 accepted`);
  t.true(accepted > 400, `only ${accepted} of 2000 accepted: the property barely runs`);
});

test('multipart bodies cut short, unclosed or with broken part headers are refused with invalid_request, and nothing escapes the parser', async (t) => {
  const faults = new ProcessFaults();
  faults.start();
  try {
    await fc.assert(
      fc.asyncProperty(formRoute, brokenFormCase, async ({ operation }, c) => {
        const result = await read(operation, c.contentType, '', c.body);
        if (!(result instanceof GatewayError) || result.code !== 'invalid_request') {
          throw new Error(`${c.why}: ${result instanceof GatewayError ? result.code : `accepted (model ${JSON.stringify(result.model)})`}: ${operation.name} ${shown(c.contentType, c.body)}`);
        }
      }),
      { ...RUN, seed: SEED + 11, numRuns: 2000 },
    );
    // A file stream busboy destroys after the parse settles still reports its error on a later tick.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    faults.stop();
  }
  t.deepEqual(faults.faults, []);
});

test('X-Governance-Metadata: a flat object of scalars within 4 KiB is read as sent; anything else is refused with invalid_request', (t) => {
  fc.assert(
    fc.property(metadataCase, (c) => {
      let parsed: Readonly<Record<string, MetadataValue>> | GatewayError;
      try {
        parsed = parseGovernanceMetadata(c.header);
      } catch (err) {
        if (!(err instanceof GatewayError)) throw new Error(`parseGovernanceMetadata threw a ${(err as Error)?.constructor?.name}: ${String(err)}`);
        parsed = err;
      }
      if (c.kind === 'invalid') {
        if (!(parsed instanceof GatewayError) || parsed.code !== 'invalid_request') throw new Error(`accepted metadata that is ${c.why}`);
        return;
      }
      if (parsed instanceof GatewayError) throw new Error(`refused valid metadata (${parsed.message}): ${c.header.slice(0, 200)}`);
      const sorted = (o: object) => Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      if (JSON.stringify(sorted(parsed)) !== JSON.stringify(sorted(c.value))) throw new Error(`read ${JSON.stringify(sorted(parsed))}, sent ${c.header}`);
    }),
    { ...RUN, seed: SEED + 3, numRuns: 3000 },
  );
  // The header's array form (Node's type for repeated headers) is refused, never crashes.
  t.throws(() => parseGovernanceMetadata(['{}', '{}']), { instanceOf: GatewayError });
  t.is(Object.keys(parseGovernanceMetadata(undefined)).length, 0);
});

/** Path segments: route words, ids, encodings and junk. */
const pathSegment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('chat', 'completions', 'embeddings', 'files', 'file-abc123', 'content', 'images', 'generations', 'fine_tuning', 'jobs', 'ftjob-XYZ', 'Chat', '{id}', 'a.b') },
  fc.webSegment(),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.constantFrom('', '.', '..', '%2e%2e', '%2F', ';x', 'x'.repeat(70), '__proto__', 'constructor'),
);
const pathname = fc
  .tuple(
    fc.oneof({ weight: 6, arbitrary: fc.constant('/v1/') }, fc.constantFrom('/', '', '//', '/v1', '/V1/', 'v1/')),
    fc.array(pathSegment, { maxLength: 8 }),
    fc.constantFrom('', '/', '//'),
  )
  .map(([prefix, segments, suffix]) => prefix + segments.join('/') + suffix);

/** The methods Node's HTTP parser lets through to the router (any other is refused before it). */
const httpMethod = fc.oneof({ weight: 3, arbitrary: fc.constantFrom('GET', 'POST', 'DELETE') }, fc.constantFrom(...http.METHODS), fc.constantFrom('get', 'post', ''));

/** The contract of a match: an operation named from the catalogue (never from client text) for the method asked, or the methods the route does answer. */
function assertSaneMatch(method: string, path: string, match: RouteMatch): void {
  const where = `${method} ${JSON.stringify(path)} → ${JSON.stringify(match)}`;
  if (match.kind === 'operation') {
    if (!CATALOGUE_NAMES.has(match.operation.name) || match.operation.method !== method) throw new Error(`operation not from the catalogue: ${where}`);
  } else if (match.kind === 'method_not_allowed') {
    if (match.allow.length === 0 || match.allow.includes(method as Operation['method'])) throw new Error(`odd allow list: ${where}`);
    for (const allowed of match.allow) if (matchRoute(allowed, path).kind !== 'operation') throw new Error(`${allowed} is allowed but does not match: ${where}`);
  } else if (match.kind !== 'unknown') {
    throw new Error(`unknown match kind: ${where}`);
  }
}

test('matchRoute: any path is unknown, a method not allowed, or a catalogue operation; a trailing slash never changes the result', (t) => {
  fc.assert(
    fc.property(pathname, httpMethod, (p, method) => {
      const match = matchRoute(method, p);
      assertSaneMatch(method, p, match);
      // The router forwards paths with and without one trailing slash: both must be judged as the same route.
      if (!p.endsWith('/') && !isDeepStrictEqual(matchRoute(method, `${p}/`), match)) throw new Error(`a trailing slash changes the match of ${method} ${JSON.stringify(p)}`);
    }),
    { ...RUN, seed: SEED + 4, numRuns: 1500 },
  );
  t.pass();
});

/** A route word with its letter case changed somewhere (never the same spelling). */
const recased = (word: string): fc.Arbitrary<string> => fc.mixedCase(fc.constant(word)).map((w) => (w === word ? word.toUpperCase() : w));

test('matchRoute: every catalogue route matches itself whatever its ids; one that differs from it only in letter case is unknown', (t) => {
  fc.assert(
    fc.property(
      routeOf(ENTRIES).chain((route) => {
        const segments = route.path.split('/');
        const words = route.template.split('/').flatMap((s, i) => (i >= 2 && s !== '{id}' ? [i] : []));
        return fc.tuple(fc.constant(route), fc.constantFrom(...words).chain((i) => recased(segments[i]!).map((w) => segments.with(i, w).join('/'))));
      }),
      ([route, variant]) => {
        const method = route.operation.method;
        const match = matchRoute(method, variant);
        if (match.kind !== 'unknown') throw new Error(`${method} ${variant} (a case variant of ${route.path}) → ${JSON.stringify(match)}`);
        if (!variant.endsWith('/') && matchRoute(method, `${variant}/`).kind !== 'unknown') throw new Error(`${method} ${variant}/ is not unknown`);
      },
    ),
    { ...RUN, seed: SEED + 5, numRuns: 500 },
  );
  t.pass();
});

test('regression: matchRoute does not read a method named like an Object.prototype member as an operation', (t) => {
  // Shrunk from the matchRoute property with any token as the method: ["constructor", "/v1/chat/completions"] matched
  // { kind: "operation", operation: Object }, since a route's operations were looked up on a plain object.
  for (const method of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    t.notThrows(() => assertSaneMatch(method, '/v1/chat/completions', matchRoute(method, '/v1/chat/completions')), method);
  }
});

// ---------------------------------------------------------------------------
// Policy files

/** Compiles, or returns the ConfigError; any other throw fails the property with what it was. */
function compileOrConfigError(text: string): CompiledPolicy | ConfigError {
  try {
    return compilePolicySource(NAME, text);
  } catch (err) {
    if (!(err instanceof ConfigError)) {
      throw new Error(`compilePolicySource threw a ${(err as Error)?.constructor?.name} (${String(err).slice(0, 200)}) for ${JSON.stringify(text.slice(0, 400))}`);
    }
    const located = /^fuzz-policy\.yaml:(\d+):(\d+): /.exec(err.message);
    const lines = text.split(/\r\n|\r|\n/).length;
    if (!located || Number(located[1]) < 1 || Number(located[1]) > lines + 1 || Number(located[2]) < 1) {
      throw new Error(`ConfigError not located in the file: ${JSON.stringify(err.message.slice(0, 200))} for ${JSON.stringify(text.slice(0, 200))}`);
    }
    if (err.message.includes('\n')) throw new Error(`ConfigError spans lines: ${JSON.stringify(err.message.slice(0, 300))}`);
    return err;
  }
}

const metadataForFacts = validMetadataEntries.map((entries) => toMetadata(JSON.parse(objectText(entries)), 'metadata'));

const requestFacts: fc.Arbitrary<RequestFacts> = fc.record({
  customer: fc.oneof(fc.constantFrom('acme', '*', 'fuzz', '__proto__', 'constructor'), fc.string({ maxLength: 10 })),
  key: fc.constantFrom('key_0000000000000001', 'key_ffffffffffffffff'),
  model: fc.oneof(fc.constant(null), fc.constantFrom('gpt-4o-mini', 'text-embedding-3-small', 'o1'), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 })),
  operation: fc.oneof(fc.constantFrom('chat.completions', 'embeddings', 'root', 'files.{id}.content', 'check'), fc.stringMatching(/^[a-z_]{1,12}(\.[a-z_]{1,12}){0,2}$/)),
  provider: fc.constantFrom(null, 'openai', 'azure'),
  metadata: metadataForFacts,
  request: fc.record({
    stream: fc.boolean(),
    max_tokens: fc.oneof(fc.constant(null), fc.nat(), fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }), fc.constant(Number.MAX_VALUE)),
    messages: fc.option(fc.nat({ max: 1000 })),
    tools: fc.option(fc.nat({ max: 100 })),
    body_bytes: fc.nat(),
  }),
});

/** What the contract says of every decision, whatever the policy. */
function assertSaneDecision(policy: CompiledPolicy, f: RequestFacts): void {
  const d = evaluate(policy, f);
  if (typeof d.allowed !== 'boolean' || typeof d.violates !== 'boolean' || typeof d.reason !== 'string' || d.reason === '') throw new Error(`malformed decision ${JSON.stringify(d)}`);
  if (!(d.riskScore >= 0 && d.riskScore <= 100)) throw new Error(`risk_score ${d.riskScore}`);
  const byId = new Map(policy.rules.map((r) => [r.id, r]));
  const sum = d.rules.reduce((acc, id) => acc + (byId.get(id)?.risk ?? NaN), 0);
  if (d.riskScore !== Math.min(100, sum)) throw new Error(`risk_score ${d.riskScore} is not min(100, ${sum})`);
  const blockedByRule = d.rules.some((id) => byId.get(id)?.block === true);
  if ((blockedByRule || d.riskScore >= policy.blockThreshold) && !d.violates) throw new Error(`decision should violate: ${JSON.stringify(d)}`);
  if (policy.mode === 'monitor' ? !d.allowed : d.allowed === d.violates) throw new Error(`allowed ${d.allowed} with violates ${d.violates} in ${policy.mode} mode`);
}

const YAML_NOISE = [
  '&a ', '*a', '<<: *a\n', '!!binary ', '!!set ', '!!omap ', '!!pairs ', '!!timestamp ', '!!float ', '!!int ', '!!str ', '!!null ', '!!map ', '!!seq ',
  '!custom ', '!<tag:yaml.org,2002:js/undefined> ', '%YAML 1.1\n---\n', '---\n', '...\n', '? ', '- ', ': ', '{', '}', '[', ']', '"', "'", '|\n', '>-\n',
  '\t', '#', '@', '`', ',', '\u0000', '\uFEFF', '\r', '\n  ', '1e999', '.inf', '-.nan', '0x10', '0o17', '~', 'null', 'yes', 'on', '2001-12-14', '__proto__: ',
];

/** The shipped policy with a few random edits: the closest thing to an admin's typo. */
const mutatedPolicy: fc.Arbitrary<string> = fc
  .array(
    fc.record({
      at: fc.nat(),
      kind: fc.constantFrom('insert', 'delete', 'replace', 'dropLine', 'dupLine'),
      text: fc.oneof(fc.constantFrom(...YAML_NOISE), fc.string({ unit: 'binary', maxLength: 6 })),
      length: fc.integer({ min: 1, max: 20 }),
    }),
    { minLength: 1, maxLength: 4 },
  )
  .map((edits) => {
    let text = FIXTURE_POLICY;
    for (const e of edits) {
      const i = e.at % (text.length + 1);
      if (e.kind === 'insert') text = text.slice(0, i) + e.text + text.slice(i);
      else if (e.kind === 'delete') text = text.slice(0, i) + text.slice(i + e.length);
      else if (e.kind === 'replace') text = text.slice(0, i) + e.text + text.slice(i + e.text.length);
      else {
        const lines = text.split('\n');
        const n = e.at % lines.length;
        if (e.kind === 'dropLine') lines.splice(n, 1);
        else lines.splice(n, 0, lines[n]!);
        text = lines.join('\n');
      }
    }
    return text;
  });

/** Policy-shaped objects whose every field may hold the wrong type. */
const wronglyTypedPolicy: fc.Arbitrary<string> = fc
  .record(
    {
      version: fc.oneof(fc.constant(1), fc.jsonValue({ maxDepth: 1 })),
      mode: fc.oneof(fc.constantFrom('enforce', 'monitor'), fc.jsonValue({ maxDepth: 1 })),
      block_threshold: fc.oneof(fc.integer({ min: -10, max: 200 }), fc.double(), fc.jsonValue({ maxDepth: 1 })),
      customers: fc.oneof(
        fc.dictionary(fc.string({ maxLength: 6 }), fc.oneof(fc.constant(null), fc.record({ models: fc.jsonValue({ maxDepth: 2 }), operations: fc.jsonValue({ maxDepth: 2 }), max_tokens: fc.jsonValue({ maxDepth: 1 }) }, { requiredKeys: [] }), fc.jsonValue({ maxDepth: 2 }))),
        fc.jsonValue({ maxDepth: 2 }),
      ),
      rules: fc.oneof(
        fc.array(
          fc.record(
            {
              id: fc.oneof(fc.constantFrom('a', 'b'), fc.jsonValue({ maxDepth: 1 })),
              description: fc.jsonValue({ maxDepth: 1 }),
              when: fc.oneof(fc.dictionary(fc.constantFrom('model', 'metadata.x', 'request.max_tokens', 'metadata.', 'request.nope', 'bogus'), fc.jsonValue({ maxDepth: 3 })), fc.jsonValue({ maxDepth: 2 })),
              risk: fc.oneof(fc.integer({ min: -10, max: 200 }), fc.jsonValue({ maxDepth: 1 })),
              action: fc.oneof(fc.constant('block'), fc.jsonValue({ maxDepth: 1 })),
              reason: fc.jsonValue({ maxDepth: 1 }),
            },
            { requiredKeys: [] },
          ),
          { maxLength: 4 },
        ),
        fc.jsonValue({ maxDepth: 2 }),
      ),
    },
    { requiredKeys: [] },
  )
  .map((o) => stringify(o));

/** Nesting deep enough to exhaust a recursive YAML composer. */
const deepYaml: fc.Arbitrary<string> = fc
  .tuple(fc.integer({ min: 100, max: 20_000 }), fc.constantFrom('[', '{a: ', '- '), fc.boolean())
  .map(([depth, open, balanced]) => {
    if (open === '- ') return `version: 1\nrules:\n${Array.from({ length: Math.min(depth, 3000) }, (_, i) => `${' '.repeat(i)}- `).join('\n')}x\n`;
    const close = open === '[' ? ']' : '}';
    return `version: 1\ncustomers: ${open.repeat(depth)}x${balanced ? close.repeat(depth) : ''}\n`;
  });

const policyText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: mutatedPolicy },
  { weight: 2, arbitrary: wronglyTypedPolicy },
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => stringify(v)),
);

test('any policy text compiles or is refused with a ConfigError located as FILE:LINE:COL; what compiles evaluates any request sanely', (t) => {
  fc.assert(
    fc.property(policyText, fc.array(requestFacts, { minLength: 1, maxLength: 3 }), (text, requests) => {
      const compiled = compileOrConfigError(text);
      if (compiled instanceof ConfigError) return;
      for (const f of requests) assertSaneDecision(compiled, f);
    }),
    { ...RUN, seed: SEED + 6, numRuns: 3000 },
  );
  t.pass();
});

test('policy text nested deeply enough to exhaust a recursive parser is refused with a ConfigError', (t) => {
  fc.assert(
    fc.property(deepYaml, (text) => {
      compileOrConfigError(text);
    }),
    { ...RUN, seed: SEED + 9, numRuns: 40 },
  );
  t.pass();
});

// Policies written exactly as config/policy.yaml documents them.
const word = fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 });
const scalar = fc.oneof(word, fc.integer({ min: -1000, max: 100_000 }), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean());
const matcher: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: scalar },
  fc.array(scalar, { minLength: 1, maxLength: 4 }),
  scalar.map((m) => ({ not: m })),
  fc.record({ gt: fc.integer(), gte: fc.integer(), lt: fc.integer(), lte: fc.integer() }, { requiredKeys: [] }).filter((o) => Object.keys(o).length > 0),
  fc.boolean().map((exists) => ({ exists })),
);
const field = fc.oneof(
  fc.constantFrom('model', 'operation', 'provider', 'customer', 'key', 'request.max_tokens', 'request.stream', 'request.messages', 'request.tools', 'request.body_bytes'),
  word.map((name) => `metadata.${name}`),
);
const documentedPolicy = fc.record(
  {
    version: fc.constant(1),
    mode: fc.constantFrom('enforce', 'monitor'),
    block_threshold: fc.integer({ min: 1, max: 100 }),
    customers: fc.dictionary(
      fc.oneof(fc.constant('*'), word),
      fc.record({ models: fc.array(word, { minLength: 1, maxLength: 3 }), operations: fc.array(word, { minLength: 1, maxLength: 3 }), max_tokens: fc.integer({ min: 1, max: 1_000_000 }) }, { requiredKeys: [] }),
      { maxKeys: 4 },
    ),
    rules: fc.uniqueArray(
      fc.record(
        {
          id: word,
          description: word,
          when: fc.dictionary(field, matcher, { minKeys: 1, maxKeys: 3 }),
          risk: fc.integer({ min: 0, max: 100 }),
          action: fc.constant('block'),
          reason: word,
        },
        { requiredKeys: ['id', 'when'] },
      ),
      { maxLength: 5, selector: (r) => r.id },
    ),
  },
  { requiredKeys: ['version', 'customers'] },
);

test('every policy written as documented compiles, and evaluates any request sanely', (t) => {
  fc.assert(
    fc.property(documentedPolicy, fc.array(requestFacts, { minLength: 1, maxLength: 4 }), (policy, requests) => {
      const text = stringify(policy);
      const compiled = compileOrConfigError(text);
      if (compiled instanceof ConfigError) throw new Error(`a documented policy was refused: ${compiled.message}\n${text}`);
      for (const f of requests) assertSaneDecision(compiled, f);
    }),
    { ...RUN, seed: SEED + 7, numRuns: 1000 },
  );
  t.pass();
});

/** The same customer entry, spelled in the ways YAML allows a mapping (or something that looks like one) to be written. */
const customerSpelling = fc.constantFrom(
  (body: string) => `{${body}}`,
  (body: string) => `!!map {${body}}`,
  (body: string) => `!!omap [ {${body}} ]`,
  (body: string) => `!!pairs [ {${body}} ]`,
  (body: string) => `!!set {${body.split(':')[0]}}`,
  () => '!!binary aGVsbG8=',
  (body: string) => `!!str ${body}`,
  (body: string) => `&c {${body}}`,
  (body: string) => `!custom {${body}}`,
);

test('a customer limited to some models is either held to them or the policy is refused, however YAML spells its entry', (t) => {
  fc.assert(
    fc.property(customerSpelling, fc.constantFrom('models: [gpt-4o-mini]', 'models: ["gpt-4o-mini"], operations: [chat.completions]'), fc.constantFrom('gpt-5', 'o1', 'dall-e-3'), (spell, body, other) => {
      const text = `version: 1\ncustomers:\n  acme: ${spell(body)}\n`;
      const compiled = compileOrConfigError(text);
      if (compiled instanceof ConfigError) return;
      const d = evaluate(compiled, {
        customer: 'acme', key: 'key_0000000000000001', model: other, operation: 'chat.completions', provider: 'openai', metadata: {},
        request: { stream: false, max_tokens: null, messages: 1, tools: null, body_bytes: 10 },
      });
      if (d.allowed) throw new Error(`acme may use ${other} under\n${text}`);
    }),
    { ...RUN, seed: SEED + 8, numRuns: 300 },
  );
  t.pass();
});

// ---------------------------------------------------------------------------
// Regression cases: the minimal counterexamples the properties above found, kept literally, each with the attack it enables.

/** The audio transcription route: a multipart form whose model field the policy judges. */
const TRANSCRIPTIONS = (() => {
  const match = matchRoute('POST', '/v1/audio/transcriptions');
  if (match.kind !== 'operation') throw new Error('POST /v1/audio/transcriptions is not in the catalogue');
  return match.operation;
})();

/** The model fields the WHATWG parser reads from a body (any name case), or null when it refuses the body. */
async function whatwgModels(contentType: string, body: Buffer): Promise<string[] | null> {
  const entries = await whatwgForm(contentType, body);
  return entries && entries.filter((e) => e.name.toLowerCase() === 'model').map((e) => ('value' in e ? e.value : 'file'));
}

/** What the policy judged of an upload: its model, or the refusal's code. */
async function judgedModel(contentType: string, body: Buffer): Promise<string | null> {
  const result = await read(TRANSCRIPTIONS, contentType, '', body);
  return result instanceof GatewayError ? result.code : result.model;
}

test('regression: a parameter that merely ends in "boundary" does not pick the multipart boundary', async (t) => {
  // Shrunk from the multipart property (seed 20261129): the policy read the decoy framed by `xboundary`.
  await t.notThrowsAsync(
    assertMultipartAgreement(
      TRANSCRIPTIONS,
      `multipart/form-data; xboundary="d:?:-+/O.'+r-"; boundary=_-`,
      Buffer.from(`--_-\r\nContent-Disposition: form-data; name="model"\r\n\r\nRIFF\r\n--d:?:-+/O.'+r-\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o-mini\r\n--d:?:-+/O.'+r---\r\n\r\n--_---\r\n`),
    ),
  );

  // The same confusion as an attack: the provider serves forbidden-model while the policy judges an allowed one hidden in the file.
  const contentType = 'multipart/form-data; xboundary=AAA; boundary=BBB';
  const body = Buffer.from(
    '--BBB\r\nContent-Disposition: form-data; name="model"\r\n\r\nforbidden-model\r\n' +
      '--BBB\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\n' +
      '--AAA\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o-mini\r\n--AAA--\r\n' +
      '\r\n--BBB--\r\n',
  );
  t.deepEqual(await whatwgModels(contentType, body), ['forbidden-model'], 'the premise: a form-data parser reads forbidden-model');
  t.true(['invalid_request', 'forbidden-model'].includes(String(await judgedModel(contentType, body))), `policy saw ${await judgedModel(contentType, body)}`);
  await t.notThrowsAsync(assertMultipartAgreement(TRANSCRIPTIONS, contentType, body));
});

test('regression: a part with two Content-Disposition headers is refused or read as a form-data parser reads it', async (t) => {
  // Shrunk from the multipart property with decoy parameters excluded: the gateway reads the first header, parsers the last.
  await t.notThrowsAsync(
    assertMultipartAgreement(
      TRANSCRIPTIONS,
      'multipart/form-data; boundary=.-.z; charset=utf-8',
      Buffer.from('--.-.z\r\nContent-Disposition: form-data; name="model"\r\nContent-Disposition: form-data; name="file"\r\n\r\ngpt-4o-mini\r\n--.-.z--\r\n'),
    ),
  );

  // The other way round it is a bypass: the gateway sees no model, so no model rule or allow-list applies, while the provider serves one.
  const contentType = 'multipart/form-data; boundary=BBB';
  const body = Buffer.from('--BBB\r\nContent-Disposition: form-data; name="file"\r\nContent-Disposition: form-data; name="model"\r\n\r\nforbidden-model\r\n--BBB--\r\n');
  t.deepEqual(await whatwgModels(contentType, body), ['forbidden-model'], 'the premise: a form-data parser reads forbidden-model');
  t.true(['invalid_request', 'forbidden-model'].includes(String(await judgedModel(contentType, body))), `policy saw ${await judgedModel(contentType, body)}`);
  await t.notThrowsAsync(assertMultipartAgreement(TRANSCRIPTIONS, contentType, body));
});

test('regression: a UTF-8 filename reaches the provider as the client sent it', async (t) => {
  // Found by the multipart property (seed 20261129) once filenames could be UTF-8: busboy read header parameters as
  // Latin-1 by default (defParamCharset), and the canonical re-encoding wrote what it read back out as UTF-8, so
  // "résumé.txt" was forwarded as "rÃ©sumÃ©.txt".
  const files = matchRoute('POST', '/v1/files');
  if (files.kind !== 'operation') return t.fail('POST /v1/files is not in the catalogue');
  const contentType = 'multipart/form-data; boundary=BBB';
  const body = Buffer.from('--BBB\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n--BBB\r\nContent-Disposition: form-data; name="file"; filename="r\u00e9sum\u00e9.txt"\r\nContent-Type: text/plain\r\n\r\nhello\r\n--BBB--\r\n', 'utf8');
  await t.notThrowsAsync(assertMultipartAgreement(files.operation, contentType, body));
});

for (const spelling of ['!!omap [ {models: [gpt-4o-mini]} ]', '!!set {models}']) {
  test(`regression: a customer entry spelled "${spelling}" does not compile into a customer allowed every model`, (t) => {
    // Found by the spelling property: YAML's !!omap and !!set build a Map and a Set, which pass as a mapping with no keys,
    // so the customer silently gets the defaults, models ["*"] and operations ["*"].
    const text = `version: 1\ncustomers:\n  acme: ${spelling}\n`;
    const compiled = compileOrConfigError(text);
    if (compiled instanceof ConfigError) {
      t.regex(compiled.message, /^fuzz-policy\.yaml:3:\d+: /);
      return;
    }
    const d = evaluate(compiled, {
      customer: 'acme', key: 'key_0000000000000001', model: 'gpt-5', operation: 'chat.completions', provider: 'openai', metadata: {},
      request: { stream: false, max_tokens: null, messages: 1, tools: null, body_bytes: 10 },
    });
    t.false(d.allowed, `acme may use gpt-5: ${d.reason}`);
  });
}
