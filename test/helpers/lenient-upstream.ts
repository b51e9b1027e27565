import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as zlib from 'node:zlib';

/**
 * A mock provider that reads every request the way LENIENT providers do, and
 * records every model any of them could have acted on. It is deliberately
 * wrong in the direction of reading too much: a gateway is only safe if what
 * it forwards means one thing to every plausible provider, so the differential
 * fuzz asserts that this whole set equals the model the audit row records.
 *
 * Readings (each adds what it finds to the set):
 * - the body as sent, and decoded through every Content-Encoding listed
 *   (gzip, x-gzip, deflate zlib or raw, br, identity; chained right to left);
 * - JSON whatever the Content-Type says, Python-json style: encoding detected
 *   from the BOM or the NUL-byte pattern (json.detect_encoding), also plain
 *   UTF-8 and a charset the Content-Type declares, a leading BOM stripped, NaN/Infinity, a trailing comma, raw control characters in
 *   strings, trailing data ignored (raw_decode), duplicate keys read both
 *   first-wins and last-wins; `model`, and `session.model` on
 *   /v1/realtime/client_secrets; also the first line alone (ndjson);
 * - form-urlencoded bodies: `model` first and last, names percent-decoded,
 *   also compared case-insensitively;
 * - multipart/* bodies: every `boundary=` parameter, preamble ignored, CRLF or
 *   bare LF, unterminated last part read to the end, folded headers, field
 *   names case-insensitive, `name=model`, `NAME="model"`, `name = "model"`,
 *   `name*=utf-8''model`, first and last of duplicate Content-Disposition
 *   headers, parts read raw and decoded per base64 / quoted-printable
 *   Content-Transfer-Encoding, first and last `model` part;
 * - the query string: `model` first and last value, names percent-decoded,
 *   exact and case-insensitive.
 * Every model string is kept as read, and also as a provider might normalise
 * it: trimmed, NUL characters removed, cut at the first NUL.
 */

export interface LenientRecord {
  /** The x-request-id header the gateway sent; undefined when it sent none. */
  requestId: string | undefined;
  method: string;
  /** Path and query exactly as received. */
  path: string;
  /** Every model a lenient provider could read from the request, deduplicated. */
  models: string[];
}

export interface LenientUpstream {
  /** Base URL including /v1, usable as a provider base_url. */
  url: string;
  records: LenientRecord[];
  /** Failures of the readers themselves: a bug in this helper, never the gateway's. */
  readerErrors: string[];
  close(): Promise<void>;
}

/** Decompression bound: the fuzz sends small bodies, and a bomb must not take the test process down. */
const MAX_DECODED_BYTES = 16 * 1024 * 1024;
/** Deeper JSON is not something a provider reads a model out of; the bound keeps the recursive reader safe. */
const MAX_JSON_DEPTH = 256;

type JsonNode =
  | { kind: 'object'; entries: [string, JsonNode][] }
  | { kind: 'array'; items: JsonNode[] }
  | { kind: 'string'; value: string }
  | { kind: 'scalar' };

/** First and last of a list: the two readings providers disagree on. */
function firstAndLast<T>(items: readonly T[]): T[] {
  if (items.length <= 1) return [...items];
  return [items[0]!, items[items.length - 1]!];
}

function headerText(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : value;
}

// ---------------------------------------------------------------- content encodings

function decodeOne(body: Buffer, coding: string): Buffer | undefined {
  const opts = { maxOutputLength: MAX_DECODED_BYTES };
  try {
    switch (coding) {
      case 'identity':
        return body;
      case 'gzip':
      case 'x-gzip':
        return zlib.gunzipSync(body, opts);
      case 'deflate':
        // RFC 9110 says zlib-wrapped, but servers accept raw deflate too since clients got it wrong for years.
        try {
          return zlib.inflateSync(body, opts);
        } catch {
          return zlib.inflateRawSync(body, opts);
        }
      case 'br':
        return zlib.brotliDecompressSync(body, opts);
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}

/** The body as sent (a provider that ignores Content-Encoding) and fully decoded (one that honours it). */
function bodyCandidates(body: Buffer, contentEncoding: string | undefined): Buffer[] {
  const candidates = [body];
  if (contentEncoding === undefined) return candidates;
  const codings = contentEncoding.split(',').map((c) => c.trim().toLowerCase()).filter((c) => c !== '');
  let current: Buffer = body;
  for (let i = codings.length - 1; i >= 0; i--) {
    const next = decodeOne(current, codings[i]!);
    if (next === undefined) return candidates;
    current = next;
  }
  if (!current.equals(body)) candidates.push(current);
  return candidates;
}

// ---------------------------------------------------------------- text encodings

function swapBytes16(bytes: Buffer): Buffer {
  const even = bytes.subarray(0, bytes.length - (bytes.length % 2));
  const out = Buffer.alloc(even.length);
  for (let i = 0; i < even.length; i += 2) {
    out[i] = even[i + 1]!;
    out[i + 1] = even[i]!;
  }
  return out;
}

function decodeUtf16(bytes: Buffer, littleEndian: boolean): string {
  const even = bytes.subarray(0, bytes.length - (bytes.length % 2));
  return (littleEndian ? even : swapBytes16(even)).toString('utf16le');
}

function decodeUtf32(bytes: Buffer, littleEndian: boolean): string | undefined {
  let out = '';
  for (let i = 0; i + 4 <= bytes.length; i += 4) {
    const cp = littleEndian ? bytes.readUInt32LE(i) : bytes.readUInt32BE(i);
    if (cp > 0x10ffff) return undefined;
    // Lone surrogates are kept: Python decodes JSON bytes with 'surrogatepass'.
    out += cp >= 0xd800 && cp <= 0xdfff ? String.fromCharCode(cp) : String.fromCodePoint(cp);
  }
  return out;
}

/** Python's json.loads(bytes): json.detect_encoding, then decode. */
function pythonJsonText(b: Buffer): string | undefined {
  if (b.length >= 4 && b[0] === 0xff && b[1] === 0xfe && b[2] === 0 && b[3] === 0) return decodeUtf32(b.subarray(4), true);
  if (b.length >= 4 && b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff) return decodeUtf32(b.subarray(4), false);
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xfe) return decodeUtf16(b.subarray(2), true);
  if (b.length >= 2 && b[0] === 0xfe && b[1] === 0xff) return decodeUtf16(b.subarray(2), false);
  if (b.length >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) return b.subarray(3).toString('utf8');
  if (b.length >= 4) {
    if (b[0] === 0) return b[1] !== 0 ? decodeUtf16(b, false) : decodeUtf32(b, false);
    if (b[1] === 0) return b[2] !== 0 || b[3] !== 0 ? decodeUtf16(b, true) : decodeUtf32(b, true);
  } else if (b.length === 2) {
    if (b[0] === 0) return decodeUtf16(b, false);
    if (b[1] === 0) return decodeUtf16(b, true);
  }
  return b.toString('utf8');
}

/** A charset the Content-Type declares: some stacks decode by it rather than by sniffing. */
function declaredCharsetText(b: Buffer, contentType: string | undefined): string | undefined {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1]?.toLowerCase();
  switch (charset) {
    case 'utf-16le':
      return decodeUtf16(b, true);
    case 'utf-16be':
      return decodeUtf16(b, false);
    case 'utf-16':
      return b[0] === 0xfe && b[1] === 0xff ? decodeUtf16(b.subarray(2), false) : decodeUtf16(b[0] === 0xff && b[1] === 0xfe ? b.subarray(2) : b, true);
    case 'utf-32le':
      return decodeUtf32(b, true);
    case 'utf-32be':
      return decodeUtf32(b, false);
    case 'utf-32':
      return b[0] === 0 && b[1] === 0 && b[2] === 0xfe && b[3] === 0xff ? decodeUtf32(b.subarray(4), false) : decodeUtf32(b[0] === 0xff && b[1] === 0xfe ? b.subarray(4) : b, true);
    case 'latin1':
    case 'iso-8859-1':
      return b.toString('latin1');
    default:
      return undefined;
  }
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/** Every text a provider could decode the body into before parsing it as JSON. */
function jsonTexts(b: Buffer, contentType: string | undefined): string[] {
  const texts = new Set<string>();
  for (const text of [pythonJsonText(b), b.toString('utf8'), declaredCharsetText(b, contentType)]) {
    if (text !== undefined) texts.add(stripBom(text));
  }
  return [...texts];
}

// ---------------------------------------------------------------- lenient JSON

/**
 * A JSON reader more forgiving than any one provider: it accepts what Python's
 * json module accepts (NaN, Infinity, control characters with strict=False,
 * raw_decode's trailing data) plus trailing commas, and keeps every duplicate
 * key. Undefined when not even this reads a value.
 */
class LenientJsonReader {
  private at = 0;

  constructor(private readonly text: string) {}

  read(): JsonNode | undefined {
    this.skipSpace();
    return this.value(0);
  }

  private skipSpace(): void {
    while (this.at < this.text.length) {
      const c = this.text.charCodeAt(this.at);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0xfeff) this.at++;
      else break;
    }
  }

  private value(depth: number): JsonNode | undefined {
    if (depth > MAX_JSON_DEPTH) return undefined;
    const c = this.text[this.at];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') {
      const s = this.string();
      return s === undefined ? undefined : { kind: 'string', value: s };
    }
    for (const literal of ['true', 'false', 'null', 'NaN', 'Infinity', '-Infinity']) {
      if (this.text.startsWith(literal, this.at)) {
        this.at += literal.length;
        return { kind: 'scalar' };
      }
    }
    const number = /^-?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?/.exec(this.text.slice(this.at, this.at + 400));
    if (number) {
      this.at += number[0].length;
      return { kind: 'scalar' };
    }
    return undefined;
  }

  private object(depth: number): JsonNode | undefined {
    this.at++;
    const entries: [string, JsonNode][] = [];
    for (;;) {
      this.skipSpace();
      if (this.text[this.at] === '}') {
        this.at++;
        return { kind: 'object', entries };
      }
      if (this.text[this.at] !== '"') return undefined;
      const key = this.string();
      if (key === undefined) return undefined;
      this.skipSpace();
      if (this.text[this.at] !== ':') return undefined;
      this.at++;
      this.skipSpace();
      const value = this.value(depth + 1);
      if (value === undefined) return undefined;
      entries.push([key, value]);
      this.skipSpace();
      if (this.text[this.at] === ',') this.at++;
      else if (this.text[this.at] !== '}') return undefined;
    }
  }

  private array(depth: number): JsonNode | undefined {
    this.at++;
    const items: JsonNode[] = [];
    for (;;) {
      this.skipSpace();
      if (this.text[this.at] === ']') {
        this.at++;
        return { kind: 'array', items };
      }
      const value = this.value(depth + 1);
      if (value === undefined) return undefined;
      items.push(value);
      this.skipSpace();
      if (this.text[this.at] === ',') this.at++;
      else if (this.text[this.at] !== ']') return undefined;
    }
  }

  private string(): string | undefined {
    this.at++;
    let out = '';
    while (this.at < this.text.length) {
      const c = this.text[this.at]!;
      if (c === '"') {
        this.at++;
        return out;
      }
      if (c !== '\\') {
        out += c;
        this.at++;
        continue;
      }
      const e = this.text[this.at + 1];
      this.at += 2;
      switch (e) {
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const hex = this.text.slice(this.at, this.at + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) return undefined;
          out += String.fromCharCode(parseInt(hex, 16));
          this.at += 4;
          break;
        }
        case undefined:
          return undefined;
        default:
          // `\"`, `\\`, `\/` and, leniently, any other escaped character stand for themselves.
          out += e;
      }
    }
    return undefined;
  }
}

/** String values at `path`, following the first and the last of duplicate keys at every level. */
function stringsAt(node: JsonNode, path: readonly string[]): string[] {
  if (path.length === 0) return node.kind === 'string' ? [node.value] : [];
  if (node.kind !== 'object') return [];
  const matches = node.entries.filter(([k]) => k === path[0]).map(([, v]) => v);
  return firstAndLast(matches).flatMap((v) => stringsAt(v, path.slice(1)));
}

function jsonModels(text: string, paths: readonly (readonly string[])[]): string[] {
  const root = new LenientJsonReader(text).read();
  if (root === undefined) return [];
  return paths.flatMap((p) => stringsAt(root, p));
}

// ---------------------------------------------------------------- forms and queries

/** Percent-decoding as form parsers do it: `+` is a space, bad escapes stay as they are, bytes are UTF-8. */
function percentDecode(s: string, plusIsSpace: boolean): string {
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '+' && plusIsSpace) {
      bytes.push(0x20);
    } else if (c === '%' && /^[0-9a-fA-F]{2}$/.test(s.slice(i + 1, i + 3))) {
      bytes.push(parseInt(s.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      const code = s.codePointAt(i)!;
      if (code > 0xffff) i++;
      bytes.push(...Buffer.from(String.fromCodePoint(code), 'utf8'));
    }
  }
  return Buffer.from(bytes).toString('utf8');
}

/** `model` of an application/x-www-form-urlencoded text: first and last, exact name and any case. */
function formModels(text: string): string[] {
  const pairs = text
    .split('&')
    .filter((p) => p !== '')
    .map((p) => {
      const eq = p.indexOf('=');
      return eq === -1 ? [percentDecode(p, true), ''] : [percentDecode(p.slice(0, eq), true), percentDecode(p.slice(eq + 1), true)];
    });
  const exact = pairs.filter(([name]) => name === 'model').map(([, v]) => v!);
  const anyCase = pairs.filter(([name]) => name!.toLowerCase() === 'model').map(([, v]) => v!);
  return [...firstAndLast(exact), ...firstAndLast(anyCase)];
}

// ---------------------------------------------------------------- multipart

/** Every `boundary` parameter, whatever its casing, spacing or quoting. */
function boundaries(contentType: string): string[] {
  const found: string[] = [];
  for (const m of contentType.matchAll(/(?:^|;)\s*boundary\s*=\s*(?:"([^"]*)"|([^;]*))/gi)) {
    const value = (m[1] ?? m[2] ?? '').trim();
    if (value !== '') found.push(value);
  }
  return [...new Set(firstAndLast(found))];
}

/** Splits on `;` outside double quotes. */
function splitParams(value: string): string[] {
  const parts: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i]!;
    if (quoted && c === '\\' && i + 1 < value.length) {
      current += c + value[i + 1]!;
      i++;
      continue;
    }
    if (c === '"') quoted = !quoted;
    if (c === ';' && !quoted) {
      parts.push(current);
      current = '';
    } else {
      current += c;
    }
  }
  parts.push(current);
  return parts;
}

function unquote(raw: string): string {
  const v = raw.trim();
  if (!v.startsWith('"')) return v;
  let out = '';
  for (let i = 1; i < v.length; i++) {
    const c = v[i]!;
    if (c === '\\' && i + 1 < v.length) {
      out += v[i + 1]!;
      i++;
    } else if (c === '"') {
      return out;
    } else {
      out += c;
    }
  }
  return out;
}

/** The field names a Content-Disposition value could be read as giving (`name`, `name*` in RFC 5987 form). */
function dispositionNames(value: string): string[] {
  const names: string[] = [];
  for (const param of splitParams(value)) {
    const m = /^\s*([^=\s]+)\s*=\s*([\s\S]*)$/.exec(param);
    if (!m) continue;
    const key = m[1]!.toLowerCase();
    if (key === 'name') names.push(unquote(m[2]!));
    if (key === 'name*') {
      const v = unquote(m[2]!);
      const ext = /^([^']*)'[^']*'([\s\S]*)$/.exec(v);
      names.push(ext ? percentDecode(ext[2]!, false) : v);
    }
  }
  return names;
}

function isModelName(name: string): boolean {
  return name.toLowerCase() === 'model' || name.trim().toLowerCase() === 'model';
}

function decodeQuotedPrintable(text: string): Buffer {
  const soft = text.replace(/=\r?\n/g, '');
  const bytes: number[] = [];
  for (let i = 0; i < soft.length; i++) {
    if (soft[i] === '=' && /^[0-9a-fA-F]{2}$/.test(soft.slice(i + 1, i + 3))) {
      bytes.push(parseInt(soft.slice(i + 1, i + 3), 16));
      i += 2;
    } else {
      bytes.push(soft.charCodeAt(i) & 0xff);
    }
  }
  return Buffer.from(bytes);
}

interface Part {
  headers: Map<string, string[]>;
  /** The part's bytes as a latin1 string (one char per byte). */
  content: string;
}

/** The header lines of a part: folded continuations joined, names lower-cased, every value kept. */
function partHeaders(lines: readonly string[]): Map<string, string[]> {
  const headers = new Map<string, string[]>();
  let last: { name: string; index: number } | undefined;
  for (const line of lines) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && last) {
      const values = headers.get(last.name)!;
      values[last.index] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const values = headers.get(name) ?? [];
    values.push(line.slice(colon + 1).trim());
    headers.set(name, values);
    last = { name, index: values.length - 1 };
  }
  return headers;
}

/** Parts delimited by `--boundary` at the start of a line; CRLF or bare LF; an unterminated last part runs to the end. */
function multipartParts(text: string, boundary: string): Part[] {
  const delimiter = `--${boundary}`;
  const starts: number[] = [];
  for (let i = text.indexOf(delimiter); i !== -1; i = text.indexOf(delimiter, i + 1)) {
    if (i === 0 || text[i - 1] === '\n') starts.push(i);
  }
  const parts: Part[] = [];
  for (let k = 0; k < starts.length; k++) {
    const after = starts[k]! + delimiter.length;
    if (text.startsWith('--', after)) break;
    const lineEnd = text.indexOf('\n', after);
    if (lineEnd === -1) break;
    const end = k + 1 < starts.length ? starts[k + 1]! : text.length;
    const lines: string[] = [];
    let at = lineEnd + 1;
    let bodyStart = -1;
    while (at < end) {
      const nl = text.indexOf('\n', at);
      const stop = nl === -1 || nl >= end ? end : nl;
      const line = text.slice(at, stop).replace(/\r$/, '');
      at = stop + 1;
      if (line === '') {
        bodyStart = at;
        break;
      }
      lines.push(line);
    }
    if (bodyStart === -1) continue;
    let content = text.slice(bodyStart, Math.max(bodyStart, end));
    if (content.endsWith('\r\n')) content = content.slice(0, -2);
    else if (content.endsWith('\n')) content = content.slice(0, -1);
    parts.push({ headers: partHeaders(lines), content });
  }
  return parts;
}

/** What a model part's value could be read as: raw, and decoded by its transfer encoding. */
function partValues(part: Part): string[] {
  const raw = Buffer.from(part.content, 'latin1');
  const values = [raw.toString('utf8')];
  for (const cte of firstAndLast(part.headers.get('content-transfer-encoding') ?? [])) {
    const coding = cte.trim().toLowerCase();
    if (coding === 'base64') values.push(Buffer.from(part.content.replace(/\s+/g, ''), 'base64').toString('utf8'));
    if (coding === 'quoted-printable') values.push(decodeQuotedPrintable(part.content).toString('utf8'));
  }
  return values;
}

function multipartModels(contentType: string, body: Buffer): string[] {
  const text = body.toString('latin1');
  const models: string[] = [];
  for (const boundary of boundaries(contentType)) {
    const modelParts = multipartParts(text, boundary).filter((part) => {
      const dispositions = firstAndLast(part.headers.get('content-disposition') ?? []);
      return dispositions.some((d) => dispositionNames(d).some(isModelName));
    });
    for (const part of firstAndLast(modelParts)) models.push(...partValues(part));
  }
  return models;
}

// ---------------------------------------------------------------- the whole reading

/** A model string as read, and as a provider might normalise it before looking it up. */
function normalisedForms(model: string): string[] {
  const noNul = model.replace(/\u0000/g, '');
  return [model, model.trim(), noNul, noNul.trim(), model.split('\u0000', 1)[0]!];
}

function mediaType(contentType: string | undefined): string {
  return (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
}

/** Every model a lenient provider could read from the request. */
export function lenientModels(path: string, headers: http.IncomingHttpHeaders, body: Buffer): string[] {
  const read: string[] = [];
  const q = path.indexOf('?');
  const pathname = (q === -1 ? path : path.slice(0, q)).toLowerCase().replace(/\/+$/, '');
  if (q !== -1) read.push(...formModels(path.slice(q + 1)));

  const contentType = headerText(headers['content-type']);
  const type = mediaType(contentType);
  const jsonPaths: string[][] = [['model']];
  if (pathname === '/v1/realtime/client_secrets') jsonPaths.push(['session', 'model']);

  for (const candidate of body.length > 0 ? bodyCandidates(body, headerText(headers['content-encoding'])) : []) {
    for (const text of jsonTexts(candidate, contentType)) {
      read.push(...jsonModels(text, jsonPaths));
      const firstLine = text.split('\n').find((line) => line.trim() !== '');
      if (firstLine !== undefined) read.push(...jsonModels(firstLine, jsonPaths));
    }
    if (type === 'application/x-www-form-urlencoded') read.push(...formModels(candidate.toString('utf8')));
    if (type.startsWith('multipart/') && contentType !== undefined) read.push(...multipartModels(contentType, candidate));
  }
  return [...new Set(read.flatMap(normalisedForms))];
}

function chatCompletion(): Record<string, unknown> {
  return {
    id: 'chatcmpl-lenient',
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: 'gpt-4o-mini',
    choices: [{ index: 0, message: { role: 'assistant', content: 'ok', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
    system_fingerprint: 'fp_lenient',
  };
}

export async function startLenientUpstream(): Promise<LenientUpstream> {
  const records: LenientRecord[] = [];
  const readerErrors: string[] = [];
  const sockets = new Set<Socket>();
  let files = 0;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    res.on('error', () => {});
    const method = req.method ?? 'GET';
    const path = req.url ?? '/';
    const chunks: Buffer[] = [];
    try {
      for await (const chunk of req) chunks.push(chunk as Buffer);
    } catch {
      // The gateway went away mid-body; nothing was served, so nothing is recorded.
      return;
    }
    const body = Buffer.concat(chunks);
    let models: string[] = [];
    try {
      models = lenientModels(path, req.headers, body);
    } catch (err) {
      // The message names the failing reader only; request content is never logged.
      readerErrors.push(err instanceof Error ? `${err.name} in ${err.stack?.split('\n')[1]?.trim() ?? 'reader'}` : 'non-Error thrown');
    }
    const requestId = headerText(req.headers['x-request-id']);
    records.push({ requestId, method, path, models });

    const pathname = path.split('?', 1)[0]!.toLowerCase();
    const payload = pathname.startsWith('/v1/files') ? { id: `file-${++files}`, object: 'file' } : chatCompletion();
    const text = Buffer.from(JSON.stringify(payload));
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(text.length) });
    res.end(text);
  }

  const server = http.createServer((req, res) => void handle(req, res));
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

  return {
    url: `http://127.0.0.1:${port}/v1`,
    records,
    readerErrors,
    async close(): Promise<void> {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      await closed;
    },
  };
}
