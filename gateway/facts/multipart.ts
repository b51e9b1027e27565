import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import busboy from 'busboy';
import { GatewayError } from '../errors/catalogue.js';

/** One part of a multipart form as busboy read it: text fields as their text, files as their bytes. */
export interface MultipartPart {
  readonly name: string;
  readonly filename: string | null;
  readonly contentType: string | null;
  readonly data: Buffer;
}

export interface MultipartLimits {
  readonly parts: number;
  readonly headerPairs: number;
  /** A text field longer than this is refused rather than cut. */
  readonly fieldBytes: number;
}

const DEFAULT_LIMITS: MultipartLimits = Object.freeze({ parts: 1000, headerPairs: 20, fieldBytes: 1024 * 1024 });

/** Transfer encodings that leave the bytes as they are; a provider may decode any other (base64, quoted-printable). */
const IDENTITY_TRANSFER = new Set(['7bit', '8bit', 'binary']);
/**
 * Names and filenames go back into a quoted header parameter: these would end
 * or escape it, and HTML-form escapes (%22, %0D, %0A) are decoded by some
 * readers and not by busboy.
 */
const UNQUOTABLE = /["\\\x00-\x1f\x7f-\x9f]|%(?:22|0d|0a)/i;

/**
 * Parses a multipart/form-data body with busboy, strictly: anything busboy
 * would skip or cut (a part without a form-data disposition or a name, a
 * field over its limit, too many parts), and any part a provider could decode
 * to other bytes, refuses the whole body. What is returned is forwarded
 * re-encoded (`encodeMultipart`), so the provider reads these parts and
 * nothing else, whatever quirks the client's encoding had.
 */
export function parseMultipart(contentType: string, body: Buffer, limits: MultipartLimits = DEFAULT_LIMITS): Promise<MultipartPart[]> {
  return new Promise((resolve, reject) => {
    const parts: MultipartPart[] = [];
    let failed = false;
    let filesOpen = 0;
    let parsed = false;
    const fail = (problem: string) => {
      if (failed) return;
      failed = true;
      reject(new GatewayError('invalid_request', `the multipart body cannot be read unambiguously: ${problem}`));
    };
    // File streams may end after the parser closes: the form is complete when both have.
    const settle = () => {
      if (failed || !parsed || filesOpen > 0) return;
      const problem = rawBodyProblem(contentType, body, parts.length);
      if (problem) fail(problem);
      else resolve(parts);
    };
    const fileEnded = () => {
      filesOpen--;
      settle();
    };
    const parser = createParser(contentType, limits);
    if (parser === null) {
      fail('its Content-Type has no usable boundary');
      return;
    }
    parser.on('field', (name, value: string | undefined, info) => {
      const field = readTextPart(name, value, info, limits);
      if (typeof field === 'string') fail(field);
      else parts.push(field);
    });
    parser.on('file', (name, stream, info) => {
      // busboy destroys an unfinished file with the form's own error; unheard, it would crash the process.
      stream.on('error', () => fail('it is not a complete multipart form'));
      const problem = partProblem(name, info.encoding, info.filename);
      if (problem) {
        stream.resume();
        fail(problem);
        return;
      }
      filesOpen++;
      parts.push(collectFile(name, info, stream, fileEnded));
    });
    parser.on('partsLimit', () => fail(`it has more than ${limits.parts} parts`));
    parser.on('error', (err: Error) => fail(err.message === 'Malformed part header' ? 'a part header is malformed' : 'it is not a complete multipart form'));
    parser.on('close', () => {
      parsed = true;
      settle();
    });
    parser.end(body);
  });
}

/** A busboy parser for the body, or null when the Content-Type gives it no boundary to read by. */
function createParser(contentType: string, limits: MultipartLimits): busboy.Busboy | null {
  try {
    return busboy({
      headers: { 'content-type': contentType },
      preservePath: true,
      // Names and filenames are written back as UTF-8; busboy's default (latin1) would garble them on the way.
      defParamCharset: 'utf8',
      // busboy signals a limit when it is reached, not passed.
      limits: { parts: limits.parts + 1, headerPairs: limits.headerPairs, fieldSize: limits.fieldBytes + 1, fieldNameSize: 256 },
    });
  } catch {
    return null;
  }
}

/** Why a part, text or file, cannot be forwarded as it was read; null when it can. */
function partProblem(name: string | undefined, encoding: string, filename?: string): string | null {
  if (!name) return 'a part has no name';
  if (UNQUOTABLE.test(name) || (filename !== undefined && UNQUOTABLE.test(filename))) return 'a part name or filename holds quotes, backslashes or control characters';
  if (!IDENTITY_TRANSFER.has(encoding.toLowerCase())) return 'a part has a Content-Transfer-Encoding other than 7bit, 8bit or binary';
  return null;
}

/** A text field as a part, or why it is refused. */
function readTextPart(name: string, value: string | undefined, info: busboy.FieldInfo, limits: MultipartLimits): MultipartPart | string {
  // busboy hands over no text for a charset it does not know.
  if (typeof value !== 'string') return 'a field declares a charset the gateway cannot read';
  const problem = partProblem(name, info.encoding) ?? (info.nameTruncated || info.valueTruncated ? `a field is longer than ${limits.fieldBytes} bytes` : null);
  return problem ?? { name, filename: null, contentType: null, data: Buffer.from(value, 'utf8') };
}

/** A file part whose bytes are filled in as its stream delivers them; `ended` is called once they all have. */
function collectFile(name: string, info: busboy.FileInfo, stream: Readable, ended: () => void): MultipartPart {
  const chunks: Buffer[] = [];
  const part = { name, filename: info.filename ?? null, contentType: info.mimeType, data: Buffer.alloc(0) };
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.on('end', () => {
    part.data = Buffer.concat(chunks);
    ended();
  });
  return part;
}

/** What busboy passes over without a complaint but another parser would read otherwise; null when the body holds none of it. */
function rawBodyProblem(contentType: string, body: Buffer, partCount: number): string | null {
  const boundary = boundaryOf(contentType);
  // busboy skips parts it cannot name (no Content-Disposition, or not form-data); a provider might not.
  if (countDelimiters(body, boundary) !== partCount + 1) return 'a part has no form-data Content-Disposition';
  // busboy reads the first of two headers, other parsers the last.
  if (repeatsHeader(body, boundary)) return 'a part repeats a header';
  return null;
}

/**
 * The one text value of a field the gateway reads, matched by name in any
 * case (providers match names case-insensitively); null when absent. Given
 * twice, in any case, it is refused: providers differ on which one wins.
 */
export function readField(parts: readonly MultipartPart[], name: string): string | null {
  const lower = name.toLowerCase();
  let found: MultipartPart | null = null;
  for (const part of parts) {
    if (part.name.toLowerCase() !== lower) continue;
    if (found) throw new GatewayError('invalid_request', `the multipart field ${name} is given more than once`, { param: name });
    found = part;
  }
  if (!found) return null;
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(found.data);
  } catch {
    throw new GatewayError('invalid_request', `the multipart field ${name} is not UTF-8 text`, { param: name });
  }
}

/** The canonical form of the parts: a fresh boundary, plain headers, each part's bytes unchanged. */
export function encodeMultipart(parts: readonly MultipartPart[]): { body: Buffer; contentType: string } {
  let boundary: string;
  do boundary = `govgate-${randomBytes(16).toString('hex')}`;
  while (parts.some((p) => p.data.includes(boundary)));
  const chunks: Buffer[] = [];
  for (const part of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"`;
    if (part.filename !== null) head += `; filename="${part.filename}"\r\nContent-Type: ${part.contentType ?? 'application/octet-stream'}`;
    chunks.push(Buffer.from(`${head}\r\n\r\n`, 'utf8'), part.data, CRLF);
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/form-data; boundary=${boundary}` };
}

const CRLF = Buffer.from('\r\n');

/** Content-Type parameters, quoted values read whole (a quoted `;` or `boundary=` is not a parameter). */
const PARAMETER = /;\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)/g;

/** The boundary as busboy reads it; none (so every part is refused) when the header names two. */
function boundaryOf(contentType: string): string {
  const boundaries = [...contentType.matchAll(PARAMETER)].filter((m) => m[1]!.toLowerCase() === 'boundary');
  if (boundaries.length !== 1) return '';
  const value = boundaries[0]![2]!.trim();
  return value.startsWith('"') ? value.slice(1, -1).replace(/\\(.)/g, '$1') : value;
}

const PART_HEADERS = /^(content-disposition|content-type|content-transfer-encoding)[ \t]*:/gim;

/** Whether a part's header block names one of the headers busboy reads more than once. */
function repeatsHeader(body: Buffer, boundary: string): boolean {
  for (const at of delimiterEnds(body, boundary)) {
    if (body[at] === 0x2d && body[at + 1] === 0x2d) continue;
    const end = body.indexOf('\r\n\r\n', at);
    if (end === -1) break;
    const seen = new Set<string>();
    for (const match of body.toString('latin1', at, end).matchAll(PART_HEADERS)) {
      const name = match[1]!.toLowerCase();
      if (seen.has(name)) return true;
      seen.add(name);
    }
  }
  return false;
}

/** Where each delimiter line's boundary ends: at the start of the body, or after a CRLF. */
function* delimiterEnds(body: Buffer, boundary: string): Generator<number> {
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  if (body.subarray(0, delimiter.length - 2).equals(delimiter.subarray(2))) yield delimiter.length - 2;
  for (let at = body.indexOf(delimiter); at !== -1; at = body.indexOf(delimiter, at + delimiter.length)) yield at + delimiter.length;
}

/** Delimiter lines in the body: one before each part and the closing one. */
function countDelimiters(body: Buffer, boundary: string): number {
  let count = 0;
  for (const _ of delimiterEnds(body, boundary)) count++;
  return count;
}
