import { isUtf8 } from 'node:buffer';
import { GatewayError } from '../errors/catalogue.js';

/** Far deeper than any API body needs; deeper bodies only probe where parsers' recursion limits differ. */
export const MAX_JSON_DEPTH = 64;

const TAB = 0x09;
const LF = 0x0a;
const CR = 0x0d;
const SPACE = 0x20;
const QUOTE = 0x22;
const COMMA = 0x2c;
const MINUS = 0x2d;
const DOT = 0x2e;
const ZERO = 0x30;
const NINE = 0x39;
const COLON = 0x3a;
const OPEN_BRACKET = 0x5b;
const BACKSLASH = 0x5c;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;

/** `\x` escapes JSON defines; any other letter after a backslash is a lenient parser's extension. */
const SIMPLE_ESCAPE = new Uint8Array(256);
for (const c of '"\\/bfnrt') SIMPLE_ESCAPE[c.charCodeAt(0)] = 1;

/** Hex digit values, -1 elsewhere. */
const HEX = new Int8Array(256).fill(-1);
for (let d = 0; d < 16; d++) {
  HEX['0123456789abcdef'.charCodeAt(d)] = d;
  HEX['0123456789ABCDEF'.charCodeAt(d)] = d;
}

/** Digits beyond which a number without an exponent may overflow a double (1.8e308 has 309). */
const MAX_PLAIN_DIGITS = 308;

const LITERALS: readonly (readonly number[])[] = ['true', 'false', 'null'].map((w) => [...Buffer.from(w)]);

class StrictJsonError extends Error {
  constructor(
    readonly problem: string,
    readonly at: number,
  ) {
    super(problem);
  }
}

/**
 * The single JSON object a body holds, read so that every JSON parser a
 * provider may use reads the same values: strict RFC 8259 syntax in UTF-8,
 * and nothing parsers are known to resolve differently (duplicate keys, where
 * some keep the first and some the last; a BOM, which some skip; NaN and
 * overflowing numbers; lone surrogates, which some replace and some reject;
 * trailing data, which streaming readers ignore).
 */
export function parseStrictJson(body: Buffer): Record<string, unknown> {
  if (body.length >= 3 && body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) {
    throw refusal('it starts with a byte order mark');
  }
  if (!isUtf8(body)) throw refusal('it is not valid UTF-8');
  try {
    scan(body);
  } catch (err) {
    if (err instanceof StrictJsonError) throw refusal(`${err.problem} (at byte ${err.at})`);
    throw err;
  }
  // The scan accepted exactly RFC 8259 text with a top-level object, which JSON.parse reads the same way.
  return JSON.parse(body.toString('utf8')) as Record<string, unknown>;
}

function refusal(problem: string): GatewayError {
  return new GatewayError('invalid_request', `the body is not a strict JSON object: ${problem}`);
}

/** Keys an object holds before its duplicates are found with a Set rather than by comparing bytes. */
const SMALL_OBJECT_KEYS = 16;

// Scan state, reused by every call (the scan never re-enters): no allocation per body once warm.
/** Where each key of every open object starts and ends in the body, innermost object last, up to keyCount. */
const keyStarts: number[] = [];
const keyEnds: number[] = [];
let keyCount = 0;
/** Per depth: the index in keyStarts of the open object's first key. */
const firstKey = new Int32Array(MAX_JSON_DEPTH + 1);
const isObject = new Uint8Array(MAX_JSON_DEPTH + 1);
/** Per depth: whether the open object's keys are in keySets (large objects, escaped keys). */
const inSet = new Uint8Array(MAX_JSON_DEPTH + 1);
const keySets: Set<string>[] = [];

/** Validates structure, depth and key uniqueness in one pass over the bytes, without building any value. */
function scan(b: Buffer): void {
  const n = b.length;
  keyCount = 0;
  let depth = 0;
  let i = skipSpace(b, 0);
  if (i >= n || b[i] !== OPEN_BRACE) throw new StrictJsonError('the body must be a single JSON object', i);

  value: for (;;) {
    i = skipSpace(b, i);
    const c = i < n ? b[i]! : -1;
    if (c === OPEN_BRACE || c === OPEN_BRACKET) {
      if (depth === MAX_JSON_DEPTH) throw new StrictJsonError(`it nests deeper than ${MAX_JSON_DEPTH} levels`, i);
      depth++;
      i = skipSpace(b, i + 1);
      openContainer(depth, c === OPEN_BRACE);
      if (b[i] !== closerOf(depth)) {
        if (c === OPEN_BRACE) i = member(b, i, depth);
        continue value;
      }
      // An empty container is a whole value already: the closer is read below like any other.
    } else if (c === QUOTE) {
      // Scalars are told apart here rather than in a helper: the extra call per value cost ~15% on 100 KB bodies.
      i = skipString(b, i);
    } else if (c === MINUS || (c >= ZERO && c <= NINE)) {
      i = skipNumber(b, i);
    } else {
      i = skipLiteral(b, i);
    }

    // After a value: a separator, or the closers of every container it ends.
    for (;;) {
      i = skipSpace(b, i);
      if (depth === 0) {
        if (i !== n) throw new StrictJsonError('there is data after the object', i);
        return;
      }
      const d = i < n ? b[i]! : -1;
      if (d === COMMA) {
        i = skipSpace(b, i + 1);
        if (isObject[depth] === 1) i = member(b, i, depth);
        continue value;
      }
      if (d !== closerOf(depth)) throw new StrictJsonError(i >= n ? 'it ends inside a value' : 'a comma or closing bracket is missing', i);
      closeContainer(depth);
      i++;
      depth--;
    }
  }
}

/** An object's keys follow those of the objects around it, and are compared by bytes until there are many. */
function openContainer(depth: number, object: boolean): void {
  isObject[depth] = object ? 1 : 0;
  if (!object) return;
  inSet[depth] = 0;
  firstKey[depth] = keyCount;
}

function closerOf(depth: number): number {
  return isObject[depth] === 1 ? CLOSE_BRACE : CLOSE_BRACKET;
}

/** Drops a closed object's keys, so the enclosing object's next keys are compared with its own alone. */
function closeContainer(depth: number): void {
  if (isObject[depth] !== 1) return;
  keyCount = firstKey[depth]!;
  // Keys of one request must not stay reachable until another large object reuses the set.
  if (inSet[depth] === 1) keySets[depth]!.clear();
}

/** A member's key, checked against the object's other keys, and its colon; returns where its value starts. */
function member(b: Buffer, i: number, depth: number): number {
  if (b[i] !== QUOTE) throw new StrictJsonError(i >= b.length ? 'it ends inside an object' : 'an object key is not a string', i);
  const end = skipString(b, i);
  const start = i + 1;
  const first = firstKey[depth]!;
  if (inSet[depth] === 0 && !stringEscaped && keyCount - first < SMALL_OBJECT_KEYS) {
    // Unescaped keys are equal exactly when their bytes are: a few short compares beat decoding every key.
    const length = end - 1 - start;
    for (let k = first; k < keyCount; k++) {
      const s = keyStarts[k]!;
      if (keyEnds[k]! - s === length && sameBytes(b, s, start, length)) throw new StrictJsonError('an object has the same key twice', i);
    }
    if (keyCount === keyStarts.length) {
      keyStarts.push(start);
      keyEnds.push(end - 1);
    } else {
      keyStarts[keyCount] = start;
      keyEnds[keyCount] = end - 1;
    }
    keyCount++;
  } else {
    let keys = keySets[depth];
    if (inSet[depth] === 0) {
      // A large object, or an escaped key, which only compares once decoded: from here on keys are decoded strings.
      if (keys === undefined) keySets[depth] = keys = new Set();
      else keys.clear();
      for (let k = first; k < keyCount; k++) keys.add(b.toString('utf8', keyStarts[k], keyEnds[k]));
      inSet[depth] = 1;
    }
    const key = stringEscaped ? (JSON.parse(b.toString('utf8', i, end)) as string) : b.toString('utf8', start, end - 1);
    if (keys!.has(key)) throw new StrictJsonError('an object has the same key twice', i);
    keys!.add(key);
  }
  const colon = skipSpace(b, end);
  if (b[colon] !== COLON) throw new StrictJsonError('a colon is missing after an object key', colon);
  return colon + 1;
}

function sameBytes(b: Buffer, x: number, y: number, length: number): boolean {
  for (let k = 0; k < length; k++) if (b[x + k] !== b[y + k]) return false;
  return true;
}

function skipSpace(b: Buffer, i: number): number {
  const n = b.length;
  while (i < n) {
    const c = b[i]!;
    if (c !== SPACE && c !== LF && c !== CR && c !== TAB) break;
    i++;
  }
  return i;
}

/** Whether the string skipString last skipped had escapes: a result without allocating one per string. */
let stringEscaped = false;

/** From an opening quote to just past the closing one. */
function skipString(b: Buffer, start: number): number {
  const n = b.length;
  let escaped = false;
  let i = start + 1;
  while (i < n) {
    const c = b[i]!;
    if (c === QUOTE) {
      stringEscaped = escaped;
      return i + 1;
    }
    if (c < 0x20) throw new StrictJsonError('a string holds a raw control character', i);
    if (c !== BACKSLASH) {
      i++;
      continue;
    }
    escaped = true;
    const e = i + 1 < n ? b[i + 1]! : -1;
    if (e === 0x75 /* u */) {
      const unit = hex4(b, i + 2);
      i += 6;
      if (unit >= 0xd800 && unit <= 0xdbff) {
        // A high surrogate counts only with its low half; alone, parsers replace it, keep it or reject it.
        if (b[i] !== BACKSLASH || b[i + 1] !== 0x75) throw new StrictJsonError('a string holds a lone surrogate', i - 6);
        const low = hex4(b, i + 2);
        if (low < 0xdc00 || low > 0xdfff) throw new StrictJsonError('a string holds a lone surrogate', i - 6);
        i += 6;
      } else if (unit >= 0xdc00 && unit <= 0xdfff) {
        throw new StrictJsonError('a string holds a lone surrogate', i - 6);
      }
    } else if (e !== -1 && SIMPLE_ESCAPE[e] === 1) {
      i += 2;
    } else {
      throw new StrictJsonError('a string holds an invalid escape', i);
    }
  }
  throw new StrictJsonError('a string is not terminated', start);
}

function hex4(b: Buffer, i: number): number {
  if (i + 4 > b.length) throw new StrictJsonError('a \\u escape is cut short', i);
  const h0 = HEX[b[i]!]!;
  const h1 = HEX[b[i + 1]!]!;
  const h2 = HEX[b[i + 2]!]!;
  const h3 = HEX[b[i + 3]!]!;
  if ((h0 | h1 | h2 | h3) < 0) throw new StrictJsonError('a \\u escape is not four hex digits', i);
  return (h0 << 12) | (h1 << 8) | (h2 << 4) | h3;
}

function skipNumber(b: Buffer, start: number): number {
  let i = start;
  if (b[i] === MINUS) i++;
  if (b[i] === ZERO) {
    i++;
  } else {
    const first = i;
    i = skipDigits(b, i);
    if (i === first) throw new StrictJsonError('a number is malformed', start);
  }
  let exponent = false;
  if (b[i] === DOT) {
    const first = ++i;
    i = skipDigits(b, i);
    if (i === first) throw new StrictJsonError('a number is malformed', start);
  }
  const e = b[i];
  if (e === 0x65 || e === 0x45) {
    exponent = true;
    i++;
    if (b[i] === 0x2b || b[i] === MINUS) i++;
    const first = i;
    i = skipDigits(b, i);
    if (i === first) throw new StrictJsonError('a number is malformed', start);
  }
  // JSON.parse reads 1e400 as Infinity, Python as inf, Go refuses it: such a number means different things.
  if ((exponent || i - start > MAX_PLAIN_DIGITS) && !Number.isFinite(Number(b.toString('latin1', start, i)))) {
    throw new StrictJsonError('a number is too large for a double', start);
  }
  return i;
}

function skipDigits(b: Buffer, i: number): number {
  const n = b.length;
  while (i < n) {
    const c = b[i]!;
    if (c < ZERO || c > NINE) break;
    i++;
  }
  return i;
}

function skipLiteral(b: Buffer, i: number): number {
  for (const word of LITERALS) {
    if (b[i] !== word[0]) continue;
    for (let k = 1; k < word.length; k++) {
      if (b[i + k] !== word[k]) throw new StrictJsonError('a value is not JSON', i);
    }
    return i + word.length;
  }
  throw new StrictJsonError(i >= b.length ? 'it ends where a value should be' : 'a value is not JSON (NaN, Infinity and bare words are not)', i);
}
