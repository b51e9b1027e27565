import * as http from 'node:http';
import { brotliCompressSync, deflateRawSync, deflateSync, gzipSync } from 'node:zlib';
import test from 'ava';
import fc from 'fast-check';
import { startHarness, type Harness } from '../helpers/gateway-harness.js';
import { startLenientUpstream, type LenientRecord, type LenientUpstream } from '../helpers/lenient-upstream.js';
import { policy } from '../helpers/policy-builder.js';
import { sqliteJson } from '../helpers/sqlite-cli.js';

/**
 * Differential fuzz of issue 14 ("judged is served"): for every request the
 * gateway forwards, the provider acts on exactly the model the audit row
 * records, and the policy allowed it.
 *
 * A real gateway (startHarness) sits in front of a provider that reads
 * requests the way lenient providers do (test/helpers/lenient-upstream.ts:
 * every content encoding decoded, JSON whatever the Content-Type, Python-json
 * leniency, multipart read case-insensitively, first and last of every
 * duplicate) and records every model any of them could read. Customer `acme`
 * may use only gpt-4o-mini, with every operation and no rule, so the model is
 * the only thing that can refuse a request. For each request the provider
 * received, its audit row (joined on the request id the gateway sent it) must
 * exist, say allowed = 1, record the one model every reading agrees on, and
 * that model must be gpt-4o-mini; the operation must be the one the spec
 * names for the method and route the provider served.
 *
 * Only the harness, HTTP, the audit table (read with the sqlite3 CLI) and the
 * provider's records are used, so the test holds for any implementation.
 * Budget: 20,000 generated cases from a fixed seed plus the handwritten seeds
 * of issue 14 points 1, 2, 3 and 5, sent with modest concurrency.
 */

const SEED = 20_140_014;
const GENERATED = 20_000;
/** Enough to keep two cores busy without turning the run into a load test. */
const CONCURRENCY = 8;
const ALLOWED = 'gpt-4o-mini';
const FORBIDDEN = 'gpt-4o';
/** Groups shown in a failure message; the rest are counted, so a broken gateway never dumps thousands of lines. */
const MAX_GROUPS_SHOWN = 80;

const POLICY = policy().customer('acme', { models: [ALLOWED], operations: ['*'] }).yaml();

type Method = 'GET' | 'POST' | 'DELETE';

interface Case {
  /** The case's main trick (or its base when it plays none); violations are grouped by it. */
  kind: string;
  /** Every trick the case plays, main one first, joined with " + ". */
  tricks: string;
  method: Method;
  /** Path and query, sent as they are. */
  path: string;
  contentType: string | undefined;
  contentEncoding: string | undefined;
  /** Sent with Transfer-Encoding: chunked instead of Content-Length. */
  chunked: boolean;
  body: Buffer;
  /** What the body is, described without its bytes, for failure messages. */
  shape: string;
}

interface Spec {
  /** Kind when the case plays no trick: a control the gateway must handle consistently too. */
  base: string;
  /** The case's own tricks, most telling first; an encoding and a query trick are added by build(). */
  tricks: readonly string[];
  /** Tricks that rarely matter alone (content type, path spelling): they come after the query trick. */
  minorTricks?: readonly string[];
  method: Method;
  path: string;
  query?: QueryTrick | undefined;
  contentType: string | undefined;
  encoding?: ContentEncodingTrick | undefined;
  body: Buffer;
  shape: string;
  /** Every model string the case carries anywhere, for the model-spelling labels. */
  models: readonly string[];
  chunked?: boolean;
}

/** The spelling tricks a model string plays, as labels. */
function spellingLabels(model: string): string[] {
  const labels: string[] = [];
  if (/^\s|\s$/.test(model)) labels.push('model with surrounding whitespace');
  if (model.includes('\u0000')) labels.push('model with NUL');
  if (model !== model.toLowerCase()) labels.push('model with changed case');
  return labels;
}

function build(spec: Spec): Case {
  const models = [...spec.models, ...(spec.query?.models ?? [])];
  // An encoding hides the whole body from a gateway that does not decode it, so it is the main trick when present;
  // `identity` changes nothing and goes last with the model spellings.
  const encoding = spec.encoding ? [spec.encoding.label] : [];
  const identity = spec.encoding?.header === 'identity';
  const tricks = [
    ...new Set([
      ...(identity ? [] : encoding),
      ...spec.tricks,
      ...(spec.query ? [spec.query.label] : []),
      ...(spec.minorTricks ?? []),
      ...(identity ? encoding : []),
      ...models.flatMap(spellingLabels),
    ]),
  ];
  return {
    kind: tricks[0] ?? spec.base,
    tricks: tricks.length > 0 ? tricks.join(' + ') : spec.base,
    method: spec.method,
    path: spec.path + (spec.query?.query ?? ''),
    contentType: spec.contentType,
    contentEncoding: spec.encoding?.header,
    chunked: spec.chunked ?? false,
    body: spec.encoding ? spec.encoding.encode(spec.body) : spec.body,
    shape: spec.shape,
  };
}

// ------------------------------------------------------------------ models

const SPELLINGS: readonly ((m: string) => string)[] = [
  (m) => `${m} `,
  (m) => ` ${m}`,
  (m) => `${m}\u0000`,
  (m) => `${m}\n`,
  (m) => m.toUpperCase(),
  (m) => m[0]!.toUpperCase() + m.slice(1),
];
const oddModel = fc.tuple(fc.constantFrom(ALLOWED, FORBIDDEN), fc.constantFrom(...SPELLINGS)).map(([m, spell]) => spell(m));
/** Where a gateway is likely to look: mostly the allowed model, the cover for a forbidden one elsewhere. */
const decoyModel = fc.oneof({ weight: 6, arbitrary: fc.constant(ALLOWED) }, { weight: 3, arbitrary: fc.constant(FORBIDDEN) }, { weight: 1, arbitrary: oddModel });
/** What the trick hides from the gateway: mostly the forbidden model. */
const payloadModel = fc.oneof({ weight: 6, arbitrary: fc.constant(FORBIDDEN) }, { weight: 3, arbitrary: fc.constant(ALLOWED) }, { weight: 1, arbitrary: oddModel });

const q = (s: string): string => JSON.stringify(s);
const MESSAGES = '[{"role":"user","content":"hi"}]';

// ------------------------------------------------------------------ JSON texts

interface JsonText {
  label: string | null;
  text: string;
  shape: string;
  models: string[];
}

function plainJson(model: string): JsonText {
  return { label: null, text: `{"model":${q(model)},"messages":${MESSAGES}}`, shape: `JSON, model ${q(model)}`, models: [model] };
}

function duplicateKey(first: string, second: string, escaped: boolean): JsonText {
  const key = escaped ? '"mod\\u0065l"' : '"model"';
  return {
    label: escaped ? 'duplicate model key (escaped)' : 'duplicate model key',
    text: `{"model":${q(first)},"messages":${MESSAGES},${key}:${q(second)}}`,
    shape: `JSON, model ${q(first)} then ${escaped ? 'mod\\u0065l' : 'model'} ${q(second)}`,
    models: [first, second],
  };
}

function nonFinite(model: string, literal: string): JsonText {
  return {
    label: 'NaN/Infinity in JSON',
    text: `{"model":${q(model)},"temperature":${literal},"messages":${MESSAGES}}`,
    shape: `JSON, model ${q(model)}, temperature ${literal}`,
    models: [model],
  };
}

function trailingComma(model: string, inArray: boolean): JsonText {
  return {
    label: 'trailing comma',
    text: inArray ? `{"model":${q(model)},"messages":[{"role":"user","content":"hi"},]}` : `{"model":${q(model)},"messages":${MESSAGES},}`,
    shape: `JSON, model ${q(model)}, trailing comma in the ${inArray ? 'array' : 'object'}`,
    models: [model],
  };
}

type Trailer = 'object' | 'junk' | 'line';

function trailingData(model: string, after: string, how: Trailer): JsonText {
  const first = `{"model":${q(model)},"messages":${MESSAGES}}`;
  const rest = how === 'object' ? `{"model":${q(after)}}` : how === 'junk' ? ' x' : `\n{"model":${q(after)},"messages":${MESSAGES}}\n`;
  return {
    label: 'trailing data',
    text: first + rest,
    shape: `JSON, model ${q(model)}, then ${how === 'junk' ? 'junk' : `another ${how === 'line' ? 'line' : 'object'} with model ${q(after)}`}`,
    models: how === 'junk' ? [model] : [model, after],
  };
}

const jsonText: fc.Arbitrary<JsonText> = fc.oneof(
  { weight: 5, arbitrary: payloadModel.map(plainJson) },
  { weight: 2, arbitrary: fc.tuple(decoyModel, payloadModel, fc.boolean(), fc.boolean()).map(([a, b, escaped, swap]) => (swap ? duplicateKey(b, a, escaped) : duplicateKey(a, b, escaped))) },
  fc.tuple(payloadModel, fc.constantFrom('NaN', 'Infinity', '-Infinity')).map(([m, lit]) => nonFinite(m, lit)),
  fc.tuple(payloadModel, fc.boolean()).map(([m, inArray]) => trailingComma(m, inArray)),
  fc.tuple(payloadModel, decoyModel, fc.constantFrom<Trailer>('object', 'junk', 'line')).map(([b, a, how]) => trailingData(b, a, how)),
);

// ------------------------------------------------------------------ transports

interface TextEncodingTrick {
  label: string;
  encode: (text: string) => Buffer;
}

function utf16(text: string, littleEndian: boolean): Buffer {
  const le = Buffer.from(text, 'utf16le');
  if (littleEndian) return le;
  const be = Buffer.alloc(le.length);
  for (let i = 0; i < le.length; i += 2) {
    be[i] = le[i + 1]!;
    be[i + 1] = le[i]!;
  }
  return be;
}

function utf32(text: string, littleEndian: boolean): Buffer {
  const points = [...text].map((c) => c.codePointAt(0)!);
  const out = Buffer.alloc(points.length * 4);
  points.forEach((p, i) => (littleEndian ? out.writeUInt32LE(p, i * 4) : out.writeUInt32BE(p, i * 4)));
  return out;
}

const bom = (...bytes: number[]): Buffer => Buffer.from(bytes);
const TEXT_ENCODINGS: readonly TextEncodingTrick[] = [
  { label: 'UTF-8 BOM', encode: (t) => Buffer.concat([bom(0xef, 0xbb, 0xbf), Buffer.from(t, 'utf8')]) },
  { label: 'UTF-16LE with BOM', encode: (t) => Buffer.concat([bom(0xff, 0xfe), utf16(t, true)]) },
  { label: 'UTF-16BE with BOM', encode: (t) => Buffer.concat([bom(0xfe, 0xff), utf16(t, false)]) },
  { label: 'UTF-16LE without BOM', encode: (t) => utf16(t, true) },
  { label: 'UTF-16BE without BOM', encode: (t) => utf16(t, false) },
  { label: 'UTF-32LE with BOM', encode: (t) => Buffer.concat([bom(0xff, 0xfe, 0, 0), utf32(t, true)]) },
  { label: 'UTF-32BE with BOM', encode: (t) => Buffer.concat([bom(0, 0, 0xfe, 0xff), utf32(t, false)]) },
  { label: 'UTF-32LE without BOM', encode: (t) => utf32(t, true) },
  { label: 'UTF-32BE without BOM', encode: (t) => utf32(t, false) },
];

/** A trick of a list by its label, for the handwritten seeds: a typo fails loudly instead of seeding the wrong trick. */
function labelled<T extends { label: string | null }>(list: readonly T[], label: string | null): T {
  const found = list.find((item) => item.label === label);
  if (!found) throw new Error(`no trick labelled ${String(label)}`);
  return found;
}

const UTF16LE_BOM = labelled(TEXT_ENCODINGS, 'UTF-16LE with BOM');
const UTF32LE_BOM = labelled(TEXT_ENCODINGS, 'UTF-32LE with BOM');

interface ContentTypeTrick {
  label: string;
  value: string | undefined;
}

const JSON_TYPE = 'application/json';
/** Content types a JSON body can be sent under other than application/json: lenient providers parse it anyway. */
const ODD_JSON_TYPES: readonly ContentTypeTrick[] = [
  { label: 'as text/plain', value: 'text/plain' },
  { label: 'without content type', value: undefined },
  { label: 'as form-urlencoded', value: 'application/x-www-form-urlencoded' },
  { label: 'as ndjson', value: 'application/x-ndjson' },
  { label: 'as octet-stream', value: 'application/octet-stream' },
  { label: 'as multipart without boundary', value: 'multipart/form-data' },
  { label: 'as JSON with charset=utf-16', value: 'application/json; charset=utf-16' },
  { label: 'as APPLICATION/JSON', value: 'APPLICATION/JSON' },
];
const TEXT_PLAIN = labelled(ODD_JSON_TYPES, 'as text/plain');
const NO_TYPE = labelled(ODD_JSON_TYPES, 'without content type');

interface ContentEncodingTrick {
  label: string;
  header: string;
  encode: (body: Buffer) => Buffer;
}

const CONTENT_ENCODINGS: readonly ContentEncodingTrick[] = [
  { label: 'gzip body', header: 'gzip', encode: (b) => gzipSync(b) },
  { label: 'x-gzip body', header: 'x-gzip', encode: (b) => gzipSync(b) },
  { label: 'GZIP body', header: 'GZIP', encode: (b) => gzipSync(b) },
  { label: 'deflate body', header: 'deflate', encode: (b) => deflateSync(b) },
  { label: 'raw deflate body', header: 'deflate', encode: (b) => deflateRawSync(b) },
  { label: 'br body', header: 'br', encode: (b) => brotliCompressSync(b) },
  { label: 'chained gzip, br body', header: 'gzip, br', encode: (b) => brotliCompressSync(gzipSync(b)) },
  { label: 'identity encoding', header: 'identity', encode: (b) => b },
];
const GZIP = labelled(CONTENT_ENCODINGS, 'gzip body');
const DEFLATE = labelled(CONTENT_ENCODINGS, 'deflate body');
const BR = labelled(CONTENT_ENCODINGS, 'br body');
/** Mostly none: encodings are one trick among many for bodies whose own trick is something else. */
const maybeEncoding = fc.oneof({ weight: 6, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom(...CONTENT_ENCODINGS) });
const chunked = fc.integer({ min: 0, max: 9 }).map((n) => n === 0);

interface QueryTrick {
  label: string;
  query: string;
  models: string[];
}

type QueryShape = 'beside' | 'repeated' | 'case' | 'percent' | 'capitalised' | 'only';

function queryTrick(shape: QueryShape, decoy: string, payload: string): QueryTrick {
  const a = encodeURIComponent(decoy);
  const b = encodeURIComponent(payload);
  switch (shape) {
    case 'beside':
      return { label: 'query model beside body model', query: `?model=${a}`, models: [decoy] };
    case 'repeated':
      return { label: 'repeated query model', query: `?model=${a}&model=${b}`, models: [decoy, payload] };
    case 'case':
      return { label: 'query model + MODEL', query: `?model=${a}&MODEL=${b}`, models: [decoy, payload] };
    case 'percent':
      return { label: 'query model + %6Dodel', query: `?model=${a}&%6Dodel=${b}`, models: [decoy, payload] };
    case 'capitalised':
      return { label: 'query Model', query: `?Model=${b}`, models: [payload] };
    case 'only':
      return { label: 'query model only', query: `?model=${b}`, models: [payload] };
  }
}

const bodyQuery = fc.tuple(fc.constantFrom<QueryShape>('beside', 'repeated', 'case', 'percent', 'capitalised'), decoyModel, payloadModel).map(([s, a, b]) => queryTrick(s, a, b));

interface PathTrick {
  label: string;
  path: string;
}

const CHAT = '/v1/chat/completions';
const TRANSCRIPTIONS = '/v1/audio/transcriptions';
const CLIENT_SECRETS = '/v1/realtime/client_secrets';
const ODD_CHAT_PATHS: readonly PathTrick[] = [
  { label: 'trailing slash', path: `${CHAT}/` },
  { label: 'mixed-case path', path: '/v1/Chat/Completions' },
  { label: 'mixed-case path', path: '/v1/chat/COMPLETIONS/' },
];

// ------------------------------------------------------------------ families

interface JsonCaseInput {
  text: JsonText;
  textEncoding?: TextEncodingTrick | undefined;
  contentType?: ContentTypeTrick | undefined;
  encoding?: ContentEncodingTrick | undefined;
  query?: QueryTrick | undefined;
  path?: PathTrick | undefined;
  chunked?: boolean;
}

/** A chat completion as a JSON text, with at most a couple of tricks on top. */
function jsonCase(c: JsonCaseInput): Case {
  const contentType = c.contentType ? c.contentType.value : JSON_TYPE;
  return build({
    base: 'plain JSON',
    tricks: [c.text.label, c.textEncoding?.label].filter((l): l is string => l !== null && l !== undefined),
    minorTricks: [c.contentType?.label, c.path?.label].filter((l): l is string => l !== undefined),
    method: 'POST',
    path: c.path?.path ?? CHAT,
    query: c.query,
    contentType,
    encoding: c.encoding,
    body: c.textEncoding ? c.textEncoding.encode(c.text.text) : Buffer.from(c.text.text, 'utf8'),
    shape: c.text.shape + (c.textEncoding ? `, ${c.textEncoding.label}` : ''),
    models: c.text.models,
    chunked: c.chunked ?? false,
  });
}

const JSON_FACETS = ['textEncoding', 'contentType', 'encoding', 'query', 'path'] as const;
const jsonCases: fc.Arbitrary<Case> = fc
  .record({
    text: jsonText,
    active: fc.subarray([...JSON_FACETS], { maxLength: 2 }),
    textEncoding: fc.constantFrom(...TEXT_ENCODINGS),
    contentType: fc.constantFrom(...ODD_JSON_TYPES),
    encoding: fc.constantFrom(...CONTENT_ENCODINGS),
    query: bodyQuery,
    path: fc.constantFrom(...ODD_CHAT_PATHS),
    chunked,
  })
  .map((r) => {
    const on = new Set<string>(r.active);
    return jsonCase({
      text: r.text,
      textEncoding: on.has('textEncoding') ? r.textEncoding : undefined,
      contentType: on.has('contentType') ? r.contentType : undefined,
      encoding: on.has('encoding') ? r.encoding : undefined,
      query: on.has('query') ? r.query : undefined,
      path: on.has('path') ? r.path : undefined,
      chunked: r.chunked,
    });
  });

const FORM_TYPE = 'application/x-www-form-urlencoded';

type FormShape = 'single' | 'repeated' | 'upper' | 'percent' | 'json';

/** form-urlencoded bodies, and a JSON body that also reads as a form naming another model. */
function formCase(shape: FormShape, decoy: string, payload: string, contentType: string | undefined, encoding?: ContentEncodingTrick): Case {
  const a = encodeURIComponent(decoy);
  const b = encodeURIComponent(payload);
  const bodies: Record<FormShape, { label: string; text: string; shape: string; models: string[] }> = {
    single: { label: 'form-urlencoded body', text: `model=${b}&messages=hi`, shape: `form, model ${q(payload)}`, models: [payload] },
    repeated: { label: 'form-urlencoded, repeated model', text: `model=${a}&model=${b}`, shape: `form, model ${q(decoy)} then ${q(payload)}`, models: [decoy, payload] },
    upper: { label: 'form-urlencoded, MODEL field', text: `MODEL=${b}&messages=hi`, shape: `form, MODEL ${q(payload)}`, models: [payload] },
    percent: { label: 'form-urlencoded, %6Dodel field', text: `%6Dodel=${b}&messages=hi`, shape: `form, %6Dodel ${q(payload)}`, models: [payload] },
    json: {
      label: 'JSON with &model= under form type',
      text: `{"model":${q(decoy)},"messages":[{"role":"user","content":"x&model=${b}&y"}]}`,
      shape: `JSON, model ${q(decoy)}, a message containing &model=${q(payload)}&`,
      models: [decoy, payload],
    },
  };
  const body = bodies[shape];
  return build({
    base: body.label,
    tricks: [body.label],
    minorTricks: contentType?.startsWith(FORM_TYPE) ? [] : [`form body as ${contentType ?? 'no content type'}`],
    method: 'POST',
    path: CHAT,
    contentType,
    encoding,
    body: Buffer.from(body.text, 'utf8'),
    shape: body.shape,
    models: body.models,
  });
}

const formCases = fc
  .tuple(
    fc.constantFrom<FormShape>('single', 'repeated', 'upper', 'percent', 'json'),
    decoyModel,
    payloadModel,
    fc.oneof({ weight: 6, arbitrary: fc.constant<string | undefined>(FORM_TYPE) }, fc.constantFrom<string | undefined>(`${FORM_TYPE}; charset=utf-8`, 'text/plain', undefined)),
    maybeEncoding,
  )
  .map(([shape, a, b, type, enc]) => formCase(shape, a, b, type, enc));

function ndjsonCase(first: string, second: string, contentType: string | undefined, encoding?: ContentEncodingTrick): Case {
  return build({
    base: 'ndjson body',
    tricks: ['ndjson body'],
    method: 'POST',
    path: CHAT,
    contentType,
    encoding,
    body: Buffer.from(`{"model":${q(first)},"messages":${MESSAGES}}\n{"model":${q(second)},"messages":${MESSAGES}}\n`, 'utf8'),
    shape: `ndjson, line 1 model ${q(first)}, line 2 model ${q(second)}`,
    models: [first, second],
  });
}

const ndjsonCases = fc
  .tuple(payloadModel, decoyModel, fc.constantFrom<string | undefined>('application/x-ndjson', 'application/jsonl', 'text/plain', JSON_TYPE, undefined), maybeEncoding)
  .map(([b, a, type, enc]) => ndjsonCase(b, a, type, enc));

// ------------------------------------------------------------------ multipart

interface NameTrick {
  label: string | null;
  header: string;
  disposition: string;
}

const NAME_TRICKS: readonly NameTrick[] = [
  { label: null, header: 'Content-Disposition', disposition: 'form-data; name="model"' },
  { label: 'multipart name=model', header: 'Content-Disposition', disposition: 'form-data; name=model' },
  { label: 'multipart NAME="model"', header: 'Content-Disposition', disposition: 'form-data; NAME="model"' },
  { label: 'multipart name = "model"', header: 'Content-Disposition', disposition: 'form-data; name = "model"' },
  { label: "multipart name*=utf-8''model", header: 'Content-Disposition', disposition: "form-data; name*=utf-8''model" },
  { label: 'multipart name="Model"', header: 'Content-Disposition', disposition: 'form-data; name="Model"' },
  { label: 'multipart name="MODEL"', header: 'Content-Disposition', disposition: 'form-data; name="MODEL"' },
  { label: 'multipart model part with filename', header: 'Content-Disposition', disposition: 'form-data; name="model"; filename="model.txt"' },
  { label: 'multipart header name in capitals', header: 'CONTENT-DISPOSITION', disposition: 'form-data; name="model"' },
];
const PLAIN_NAME = labelled(NAME_TRICKS, null);
const UNQUOTED_NAME = labelled(NAME_TRICKS, 'multipart name=model');
const UPPER_PARAM = labelled(NAME_TRICKS, 'multipart NAME="model"');
const SPACED_NAME = labelled(NAME_TRICKS, 'multipart name = "model"');

const MULTIPART_FACETS = ['duplicateDisposition', 'transferEncoding', 'preamble', 'decoyPart', 'bareLf', 'unterminated', 'quotedBoundary', 'encoding', 'query'] as const;
type MultipartFacet = (typeof MULTIPART_FACETS)[number];

interface MultipartInput {
  name: NameTrick;
  payload: string;
  decoy: string;
  boundary: string;
  path: string;
  facets: ReadonlySet<MultipartFacet>;
  /** Which of two things comes first where the facet has an order (dispositions, decoy part). */
  decoyFirst: boolean;
  transferEncoding: 'base64' | 'quoted-printable';
  fakePreamblePart: boolean;
  withFile: boolean;
  encoding?: ContentEncodingTrick | undefined;
  query?: QueryTrick | undefined;
}

function quotedPrintable(text: string): string {
  return [...Buffer.from(text, 'utf8')].map((b) => `=${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

const FACET_LABELS: Record<Exclude<MultipartFacet, 'encoding' | 'query' | 'transferEncoding'>, string> = {
  duplicateDisposition: 'dup content-disposition',
  preamble: 'multipart preamble',
  decoyPart: 'second model part',
  bareLf: 'multipart with bare LF',
  unterminated: 'unterminated multipart',
  quotedBoundary: 'quoted boundary',
};

function multipartCase(m: MultipartInput): Case {
  const nl = m.facets.has('bareLf') ? '\n' : '\r\n';
  const tricks: string[] = [];
  if (m.name.label) tricks.push(m.name.label);
  for (const f of m.facets) {
    if (f === 'transferEncoding') tricks.push(`${m.transferEncoding} part`);
    else if (f === 'preamble') tricks.push(m.fakePreamblePart ? 'multipart preamble with a fake part' : FACET_LABELS.preamble);
    else if (f !== 'encoding' && f !== 'query') tricks.push(FACET_LABELS[f]);
  }

  const modelHeaders: string[] = [];
  const decoyDisposition = `Content-Disposition: form-data; name="purpose"`;
  const own = `${m.name.header}: ${m.name.disposition}`;
  if (m.facets.has('duplicateDisposition')) modelHeaders.push(...(m.decoyFirst ? [decoyDisposition, own] : [own, decoyDisposition]));
  else modelHeaders.push(own);
  let value = m.payload;
  if (m.facets.has('transferEncoding')) {
    modelHeaders.push(`Content-Transfer-Encoding: ${m.transferEncoding}`);
    value = m.transferEncoding === 'base64' ? Buffer.from(m.payload, 'utf8').toString('base64') : quotedPrintable(m.payload);
  }
  const parts: string[] = [`${modelHeaders.join(nl)}${nl}${nl}${value}`];
  if (m.facets.has('decoyPart')) {
    const decoyPart = `Content-Disposition: form-data; name="model"${nl}${nl}${m.decoy}`;
    if (m.decoyFirst) parts.unshift(decoyPart);
    else parts.push(decoyPart);
  }
  if (m.withFile) parts.push(`Content-Disposition: form-data; name="file"; filename="a.wav"${nl}Content-Type: audio/wav${nl}${nl}RIFF\u0000\u0000\u0000\u0000WAVE`);

  let preamble = '';
  if (m.facets.has('preamble')) {
    // A fake part that does not start a line is preamble to every parser that follows RFC 2046.
    preamble = m.fakePreamblePart ? `x--${m.boundary}${nl}Content-Disposition: form-data; name="model"${nl}${nl}${m.decoy}${nl}` : `This is the preamble.${nl}`;
  }
  const text = preamble + parts.map((p) => `--${m.boundary}${nl}${p}${nl}`).join('') + (m.facets.has('unterminated') ? '' : `--${m.boundary}--${nl}`);
  const boundaryParam = m.facets.has('quotedBoundary') ? `"${m.boundary}"` : m.boundary;
  const decoyUsed = m.facets.has('decoyPart') || (m.facets.has('preamble') && m.fakePreamblePart);
  return build({
    base: 'plain multipart',
    tricks,
    method: 'POST',
    path: m.path,
    query: m.query,
    contentType: `multipart/form-data; boundary=${boundaryParam}`,
    encoding: m.encoding,
    body: Buffer.from(text, 'utf8'),
    shape: `multipart, model part ${q(m.name.disposition)} = ${q(m.payload)}${decoyUsed ? `, decoy model ${q(m.decoy)}` : ''}${m.withFile ? ', a file part' : ''}`,
    models: decoyUsed ? [m.payload, m.decoy] : [m.payload],
  });
}

const boundary = fc.constantFrom('xYzZY', '----WebKitFormBoundary7MA4YWxkTrZu0gW', 'b0und4ry', '=_part_1');

const multipartCases = fc
  .record({
    name: fc.oneof({ weight: 4, arbitrary: fc.constant(PLAIN_NAME) }, { weight: 8, arbitrary: fc.constantFrom(...NAME_TRICKS.filter((n) => n !== PLAIN_NAME)) }),
    payload: payloadModel,
    decoy: decoyModel,
    boundary,
    path: fc.constantFrom(TRANSCRIPTIONS, CHAT),
    active: fc.subarray([...MULTIPART_FACETS], { maxLength: 2 }),
    decoyFirst: fc.boolean(),
    transferEncoding: fc.constantFrom<'base64' | 'quoted-printable'>('base64', 'quoted-printable'),
    fakePreamblePart: fc.boolean(),
    withFile: fc.boolean(),
    encoding: fc.constantFrom(...CONTENT_ENCODINGS),
    query: bodyQuery,
  })
  .map((r) => {
    const facets = new Set<MultipartFacet>(r.active);
    return multipartCase({
      ...r,
      facets,
      encoding: facets.has('encoding') ? r.encoding : undefined,
      query: facets.has('query') ? r.query : undefined,
    });
  });

/** A JSON body under a multipart content type whose text contains the boundary: is it JSON or a form? */
function jsonUnderMultipartCase(model: string, b: string, crlfWhitespace: boolean, query?: QueryTrick, encoding?: ContentEncodingTrick): Case {
  const text = crlfWhitespace
    ? `{"messages":[{"role":"user","content":"--${b}"}],\r\n\r\n"model":${q(model)}}`
    : `{"model":${q(model)},"messages":[{"role":"user","content":"--${b}\\r\\nContent-Disposition: form-data; name=\\"x\\"\\r\\n\\r\\ny"}]}`;
  return build({
    base: 'JSON under multipart type (boundary in text)',
    tricks: ['JSON under multipart type (boundary in text)'],
    method: 'POST',
    path: CHAT,
    query,
    contentType: `multipart/form-data; boundary=${b}`,
    encoding,
    body: Buffer.from(text, 'utf8'),
    shape: `JSON, model ${q(model)}, the boundary inside a message${crlfWhitespace ? ', CRLF CRLF between tokens' : ''}`,
    models: [model],
  });
}

const jsonUnderMultipartCases = fc
  .tuple(payloadModel, boundary, fc.boolean(), fc.option(bodyQuery, { freq: 3, nil: undefined }), maybeEncoding)
  .map(([m, b, crlf, query, enc]) => jsonUnderMultipartCase(m, b, crlf, query, enc));

// ------------------------------------------------------------------ query, method and nested-model families

type QueryBody = 'empty' | 'modelless' | 'model';

function queryCase(method: Method, shape: QueryShape, decoy: string, payload: string, body: QueryBody, path = CHAT): Case {
  const text = body === 'empty' ? '' : body === 'modelless' ? `{"messages":${MESSAGES}}` : `{"model":${q(decoy)},"messages":${MESSAGES}}`;
  return build({
    base: 'query model',
    tricks: [queryTrick(shape, decoy, payload).label],
    minorTricks: path === CHAT ? [] : ['trailing slash'],
    method,
    path,
    query: queryTrick(shape, decoy, payload),
    contentType: body === 'empty' ? undefined : JSON_TYPE,
    body: Buffer.from(text, 'utf8'),
    shape: body === 'empty' ? 'no body' : body === 'modelless' ? 'JSON without a model' : `JSON, model ${q(decoy)}`,
    models: body === 'model' ? [decoy] : [],
  });
}

/** A single `model` parameter on GET is the list filter of stored completions, not a model in use: only repeats are sent. */
const queryCases = fc
  .tuple(fc.constantFrom<Method>('POST', 'POST', 'GET'), fc.constantFrom<QueryShape>('repeated', 'case', 'percent', 'beside', 'capitalised', 'only'), decoyModel, payloadModel, fc.constantFrom<QueryBody>('empty', 'modelless', 'model'), fc.constantFrom(CHAT, `${CHAT}/`))
  .map(([method, shape, a, b, body, path]) => {
    if (method === 'GET') return queryCase('GET', shape === 'repeated' || shape === 'case' ? shape : 'percent', a, b, body === 'model' ? 'empty' : body, path);
    return queryCase(method, shape, a, b, body, path);
  });

function methodCase(method: Method, path: string, query: string, withBody: boolean): Case {
  return build({
    base: `${method} /v1/chat/completions`,
    tricks: [`${method} /v1/chat/completions`],
    minorTricks: path.endsWith('/') ? ['trailing slash'] : [],
    method,
    path: path + query,
    contentType: withBody ? JSON_TYPE : undefined,
    body: Buffer.from(withBody ? '{}' : '', 'utf8'),
    shape: withBody ? 'JSON {}' : 'no body',
    models: [],
  });
}

const methodCases = fc
  .tuple(fc.constantFrom<Method>('GET', 'DELETE'), fc.constantFrom(CHAT, `${CHAT}/`), fc.constantFrom('', '?limit=2', '?order=asc&limit=1'), fc.boolean())
  .map(([method, path, query, withBody]) => methodCase(method, path, query, withBody));

type SecretsShape = 'session' | 'beside' | 'duplicateSession' | 'duplicateInner';

function clientSecretsCase(shape: SecretsShape, decoy: string, payload: string, path = CLIENT_SECRETS, encoding?: ContentEncodingTrick): Case {
  const bodies: Record<SecretsShape, { label: string; text: string; shape: string; models: string[] }> = {
    session: { label: 'client_secrets session.model', text: `{"session":{"type":"realtime","model":${q(payload)}}}`, shape: `session.model ${q(payload)}`, models: [payload] },
    beside: {
      label: 'client_secrets session.model beside a top-level model',
      text: `{"model":${q(decoy)},"session":{"type":"realtime","model":${q(payload)}}}`,
      shape: `model ${q(decoy)}, session.model ${q(payload)}`,
      models: [decoy, payload],
    },
    duplicateSession: {
      label: 'client_secrets duplicate session',
      text: `{"session":{"type":"realtime","model":${q(decoy)}},"session":{"type":"realtime","model":${q(payload)}}}`,
      shape: `session.model ${q(decoy)}, then another session with ${q(payload)}`,
      models: [decoy, payload],
    },
    duplicateInner: {
      label: 'client_secrets duplicate session.model',
      text: `{"session":{"type":"realtime","model":${q(decoy)},"model":${q(payload)}}}`,
      shape: `session.model ${q(decoy)} then ${q(payload)}`,
      models: [decoy, payload],
    },
  };
  const body = bodies[shape];
  return build({
    base: body.label,
    tricks: [body.label],
    minorTricks: path === CLIENT_SECRETS ? [] : ['trailing slash'],
    method: 'POST',
    path,
    contentType: JSON_TYPE,
    encoding,
    body: Buffer.from(body.text, 'utf8'),
    shape: body.shape,
    models: body.models,
  });
}

const clientSecretsCases = fc
  .tuple(fc.constantFrom<SecretsShape>('session', 'beside', 'duplicateSession', 'duplicateInner'), decoyModel, payloadModel, fc.constantFrom(CLIENT_SECRETS, `${CLIENT_SECRETS}/`), maybeEncoding)
  .map(([shape, a, b, path, enc]) => clientSecretsCase(shape, a, b, path, enc));

// ------------------------------------------------------------------ seeds: every finding of issue 14 points 1, 2, 3 and 5

const chat = (model: string): JsonText => plainJson(model);
const SEEDS: readonly Case[] = [
  // 1. Unreadable bodies forwarded as model NULL (as text/plain: a declared JSON type the old gateway refused outright).
  jsonCase({ text: chat(FORBIDDEN), encoding: GZIP, contentType: TEXT_PLAIN }),
  jsonCase({ text: chat(FORBIDDEN), encoding: DEFLATE, contentType: TEXT_PLAIN }),
  jsonCase({ text: chat(FORBIDDEN), encoding: BR, contentType: TEXT_PLAIN }),
  jsonCase({ text: nonFinite(FORBIDDEN, 'NaN'), contentType: TEXT_PLAIN }),
  jsonCase({ text: trailingComma(FORBIDDEN, false), contentType: NO_TYPE }),
  jsonCase({ text: trailingData(FORBIDDEN, ALLOWED, 'junk'), contentType: TEXT_PLAIN }),
  jsonCase({ text: chat(FORBIDDEN), textEncoding: UTF16LE_BOM, contentType: TEXT_PLAIN }),
  jsonCase({ text: chat(FORBIDDEN), textEncoding: UTF32LE_BOM, contentType: TEXT_PLAIN }),
  formCase('single', ALLOWED, FORBIDDEN, FORM_TYPE),
  ndjsonCase(FORBIDDEN, ALLOWED, 'application/x-ndjson'),
  jsonUnderMultipartCase(FORBIDDEN, 'xYzZY', false),
  // ... and a `?model=` of the allowed model makes the row lie.
  jsonCase({ text: chat(FORBIDDEN), encoding: GZIP, contentType: TEXT_PLAIN, query: queryTrick('beside', ALLOWED, FORBIDDEN) }),
  // 2. Multipart field names the gateway does not see.
  ...[UNQUOTED_NAME, UPPER_PARAM, SPACED_NAME].map((name) =>
    multipartCase({ name, payload: FORBIDDEN, decoy: ALLOWED, boundary: 'xYzZY', path: TRANSCRIPTIONS, facets: new Set(), decoyFirst: false, transferEncoding: 'base64', fakePreamblePart: false, withFile: true }),
  ),
  // 3. Repeated `model` query parameters: the gateway takes the first, Starlette the last.
  queryCase('POST', 'repeated', ALLOWED, FORBIDDEN, 'empty'),
  queryCase('POST', 'repeated', ALLOWED, FORBIDDEN, 'modelless'),
  // 5. Method-blind operations and nested models.
  methodCase('GET', CHAT, '', false),
  methodCase('DELETE', CHAT, '', false),
  clientSecretsCase('session', ALLOWED, FORBIDDEN),
];

const generatedCase: fc.Arbitrary<Case> = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom(...SEEDS) },
  { weight: 10, arbitrary: jsonCases },
  { weight: 2, arbitrary: formCases },
  { weight: 1, arbitrary: ndjsonCases },
  { weight: 6, arbitrary: multipartCases },
  { weight: 1, arbitrary: jsonUnderMultipartCases },
  { weight: 2, arbitrary: queryCases },
  { weight: 1, arbitrary: methodCases },
  { weight: 1, arbitrary: clientSecretsCases },
);

// ------------------------------------------------------------------ sending

interface Answer {
  status: number | null;
  /** The gateway's x-request-id: the same id it sends the provider and writes into the row's meta. */
  requestId: string | undefined;
  /** Set when no answer came back; a description without request content. */
  failure?: string;
}

function send(agent: http.Agent, origin: URL, key: string, c: Case): Promise<Answer> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (c.contentType !== undefined) headers['content-type'] = c.contentType;
  if (c.contentEncoding !== undefined) headers['content-encoding'] = c.contentEncoding;
  if (c.chunked) headers['transfer-encoding'] = 'chunked';
  else if (c.body.length > 0 || c.method !== 'GET') headers['content-length'] = String(c.body.length);
  return new Promise((resolve) => {
    const req = http.request({ host: origin.hostname, port: Number(origin.port), method: c.method, path: c.path, headers, agent }, (res) => {
      const requestId = typeof res.headers['x-request-id'] === 'string' ? res.headers['x-request-id'] : undefined;
      res.on('data', () => {});
      res.on('end', () => resolve({ status: res.statusCode ?? null, requestId }));
      res.on('error', (err) => resolve({ status: res.statusCode ?? null, requestId, failure: err.message }));
    });
    req.setTimeout(15_000, () => req.destroy(new Error('no answer within 15 s')));
    req.on('error', (err) => resolve({ status: null, requestId: undefined, failure: err.message }));
    req.end(c.body.length > 0 ? c.body : undefined);
  });
}

async function sendAll(origin: string, key: string, cases: readonly Case[]): Promise<Answer[]> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
  const url = new URL(origin);
  const answers: Answer[] = new Array<Answer>(cases.length);
  let next = 0;
  try {
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (next < cases.length) {
          const i = next++;
          answers[i] = await send(agent, url, key, cases[i]!);
        }
      }),
    );
  } finally {
    agent.destroy();
  }
  return answers;
}

// ------------------------------------------------------------------ judging

interface AuditRow {
  id: string;
  model_null: number;
  model_hex: string;
  operation: string | null;
  allowed: number;
  request_id: string | null;
}

interface Row {
  model: string | null;
  operation: string | null;
  allowed: number;
}

/** The operation the spec names for what the provider served, for the routes this test sends to. */
function operationProblem(method: string, path: string, recorded: string | null): string | undefined {
  const route = path.split('?', 1)[0]!.toLowerCase().replace(/\/+$/, '');
  const postNames: Record<string, string> = {
    [CHAT]: 'chat.completions',
    [TRANSCRIPTIONS]: 'audio.transcriptions',
    [CLIENT_SECRETS]: 'realtime.client_secrets',
  };
  const name = postNames[route];
  if (name === undefined) return undefined;
  if (method === 'POST') return recorded === name ? undefined : `operation recorded as ${recorded}, the provider served ${name}`;
  if (method === 'GET' && route === CHAT) return recorded === 'chat.completions.list' ? undefined : `method-blind operation: GET recorded as ${recorded}, the spec says chat.completions.list`;
  return recorded === name ? `method-blind operation: ${method} recorded as ${name}` : undefined;
}

function describeCase(index: number, c: Case | undefined, record: LenientRecord, row: Row | undefined): string {
  const request = c
    ? `#${index} [${c.tricks}] ${c.method} ${c.path} content-type=${c.contentType === undefined ? '(none)' : q(c.contentType)}${c.contentEncoding ? ` content-encoding=${q(c.contentEncoding)}` : ''}${c.chunked ? ' chunked' : ''}; ${c.shape}`
    : `${record.method} ${record.path}`;
  const seen = `provider read ${JSON.stringify(record.models)}`;
  const audit = row ? `row: model=${row.model === null ? 'NULL' : q(row.model)} operation=${row.operation} allowed=${row.allowed}` : 'no row';
  const line = `${request}; ${seen}; ${audit}`;
  return line.length > 500 ? `${line.slice(0, 497)}...` : line;
}

interface Group {
  /** Violating requests in the group. */
  requests: number;
  /** How many of them broke each part of the invariant. */
  what: Map<string, number>;
  example: string;
  /** Lower is a better example: one that served an unapproved model, with the fewest tricks. */
  exampleScore: number;
}

function report(groups: Map<string, Group>): string {
  const sorted = [...groups.entries()].sort((a, b) => b[1].requests - a[1].requests);
  const lines = sorted.slice(0, MAX_GROUPS_SHOWN).map(([kind, g]) => {
    const what = [...g.what.entries()].map(([w, n]) => `${w} ×${n}`).join('; ');
    return `  [${g.requests}] ${kind}: ${what}\n        e.g. ${g.example}`;
  });
  if (sorted.length > MAX_GROUPS_SHOWN) {
    const rest = sorted.slice(MAX_GROUPS_SHOWN).reduce((n, [, g]) => n + g.requests, 0);
    lines.push(`  ... and ${sorted.length - MAX_GROUPS_SHOWN} more kinds with ${rest} violating requests`);
  }
  return lines.join('\n');
}

let upstream: LenientUpstream | undefined;
let gw: Harness | undefined;

test.after.always(async () => {
  await gw?.close();
  await upstream?.close();
});

test('differential: every forwarded request is served the one model its audit row records, and that model was allowed', async (t) => {
  t.timeout(170_000);
  const started = Date.now();
  upstream = await startLenientUpstream();
  gw = await startHarness(upstream.url, { policy: POLICY });
  const { key } = gw.createKey('acme');

  const cases = [...SEEDS, ...fc.sample(generatedCase, { seed: SEED, numRuns: GENERATED })];
  const answers = await sendAll(gw.url, key, cases);
  const sentMs = Date.now() - started;

  const caseByRequestId = new Map<string, number>();
  answers.forEach((a, i) => {
    if (a.requestId !== undefined) caseByRequestId.set(a.requestId, i);
  });

  // One query at the end: with on_write_failure: block a row is committed before its request is forwarded, so every
  // request the provider saw already has its row.
  const rows = new Map<string, Row>();
  for (const r of sqliteJson<AuditRow>(gw.dbPath, "select id, model is null as model_null, hex(model) as model_hex, operation, allowed, json_extract(meta, '$.request_id') as request_id from usagelog")) {
    if (r.request_id === null) continue;
    rows.set(r.request_id, { model: r.model_null ? null : Buffer.from(r.model_hex, 'hex').toString('utf8'), operation: r.operation, allowed: r.allowed });
  }

  const groups = new Map<string, Group>();
  let violating = 0;
  let controlsForwarded = 0;
  for (const record of upstream.records) {
    const index = record.requestId === undefined ? undefined : caseByRequestId.get(record.requestId);
    const c = index === undefined ? undefined : cases[index];
    const kind = c?.kind ?? 'a forwarded request whose answer never reached the test';
    const row = record.requestId === undefined ? undefined : rows.get(record.requestId);
    if (c?.kind === 'plain JSON' && record.models.length === 1 && record.models[0] === ALLOWED) controlsForwarded++;

    // Model problems are grouped by the case's kind; operation problems depend only on the method and path, so by those.
    const found: [group: string, what: string][] = [];
    if (!row) {
      found.push([kind, 'forwarded without an audit row']);
    } else {
      if (row.allowed !== 1) found.push([kind, 'forwarded although the row says allowed = 0']);
      const rowModel = row.model === null ? 'NULL' : 'another model';
      if (record.models.some((m) => m !== row.model && m !== ALLOWED)) {
        found.push([kind, `provider could read a model the policy never approved, the row says ${rowModel}`]);
      } else if (record.models.some((m) => m !== row.model)) {
        found.push([kind, `provider read ${ALLOWED}, the row says ${rowModel}`]);
      } else if (row.model !== null && row.model !== ALLOWED) {
        found.push([kind, `forwarded a model other than ${ALLOWED}`]);
      }
      const opProblem = operationProblem(record.method, record.path, row.operation);
      if (opProblem) found.push([`operation of ${record.method} ${record.path.split('?', 1)[0]}`, opProblem]);
    }
    if (found.length === 0) continue;

    violating++;
    const servedForbidden = record.models.some((m) => m !== ALLOWED && m !== row?.model);
    const trickCount = c ? c.tricks.split(' + ').length : 50;
    for (const [group, what] of found) {
      // A model group is best shown by a request that served a forbidden model; any group by the simplest request.
      const exampleScore = (servedForbidden || group !== kind ? 0 : 100) + trickCount;
      const g = groups.get(group) ?? { requests: 0, what: new Map<string, number>(), example: '', exampleScore: Infinity };
      if (exampleScore < g.exampleScore) {
        g.example = `${describeCase(index ?? -1, c, record, row)} → ${what}`;
        g.exampleScore = exampleScore;
      }
      g.requests++;
      g.what.set(what, (g.what.get(what) ?? 0) + 1);
      groups.set(group, g);
    }
  }

  const statuses = new Map<string, number>();
  for (const a of answers) statuses.set(String(a.status ?? 'none'), (statuses.get(String(a.status ?? 'none')) ?? 0) + 1);
  const failures = answers.filter((a) => a.failure !== undefined);
  t.log(
    `${cases.length} cases (${SEEDS.length} seeds) started and sent in ${(sentMs / 1000).toFixed(1)} s; statuses ${JSON.stringify(Object.fromEntries(statuses))}; ` +
      `${upstream.records.length} forwarded, ${violating} of them violating, in ${groups.size} kinds`,
  );

  t.true(cases.length >= GENERATED, 'the budget of generated cases was not met');
  t.deepEqual(upstream.readerErrors, [], 'the lenient reader itself failed: fix test/helpers/lenient-upstream.ts');
  t.true(failures.length <= cases.length / 100, `${failures.length} requests got no answer, e.g. ${failures[0]?.failure ?? ''}`);
  t.true(controlsForwarded > 0, `no plain JSON request for ${ALLOWED} was forwarded: the differential would prove nothing`);
  if (groups.size > 0) {
    t.fail(`${violating} of ${upstream.records.length} forwarded requests were not served what their audit row says; by kind (a request can be in a model group and an operation group):\n${report(groups)}`);
  }
});
