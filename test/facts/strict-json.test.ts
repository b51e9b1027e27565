import assert from 'node:assert/strict';
import test from 'ava';
import fc from 'fast-check';
import { GatewayError } from '../../gateway/errors/catalogue.js';
import { MAX_JSON_DEPTH, parseStrictJson } from '../../gateway/facts/strict-json.js';

const SEED = 20261214;

/** The refusal for a body, or null when it is accepted. */
function refusal(body: Buffer | string): GatewayError | null {
  try {
    parseStrictJson(typeof body === 'string' ? Buffer.from(body, 'utf8') : body);
    return null;
  } catch (err) {
    if (err instanceof GatewayError) return err;
    throw err;
  }
}

function refuses(t: import('ava').ExecutionContext, body: Buffer | string, problem: RegExp): void {
  const err = refusal(body);
  if (err === null) {
    t.fail(`accepted ${JSON.stringify(typeof body === 'string' ? body : body.toString('latin1'))}`);
    return;
  }
  t.is(err.code, 'invalid_request');
  t.is(err.status, 400);
  t.regex(err.message, problem);
}

test('a chat body is read as JSON.parse reads it', (t) => {
  const text = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"h\\u00e9llo \\ud83d\\ude00 Zürich"}],"temperature":0.7,"max_tokens":-0,"n":1e2,"stop":null,"stream":false}';
  t.deepEqual(parseStrictJson(Buffer.from(text)), JSON.parse(text));
  t.deepEqual(parseStrictJson(Buffer.from(' \t\r\n{}\n\r\t ')), {});
});

test('refused: bytes that are not UTF-8', (t) => {
  refuses(t, Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), /not valid UTF-8/);
  // Overlong "/" and a UTF-8-encoded surrogate: lenient decoders turn both into text.
  refuses(t, Buffer.from([0x7b, 0x22, 0xc0, 0xaf, 0x22, 0x3a, 0x31, 0x7d]), /not valid UTF-8/);
  refuses(t, Buffer.from([0x7b, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x3a, 0x31, 0x7d]), /not valid UTF-8/);
  refuses(t, Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('{}', 'utf16le')]), /not valid UTF-8/);
});

test('refused: a byte order mark', (t) => {
  refuses(t, Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{"model":"gpt-4o"}')]), /byte order mark/);
  // Not whitespace either after leading spaces.
  refuses(t, ` \ufeff{"model":"gpt-4o"}`, /single JSON object/);
  refuses(t, `{"model":"gpt-4o"}\ufeff`, /data after the object/);
});

test('refused: anything but a single JSON object', (t) => {
  for (const body of ['', '   ', '[]', '[{"model":"gpt-4o"}]', '"{}"', '1', 'null', 'true']) refuses(t, body, /single JSON object/);
  refuses(t, '{"model":"gpt-4o"} {"model":"gpt-4o-mini"}', /data after the object/);
  refuses(t, '{"model":"gpt-4o"}\n{"model":"gpt-4o-mini"}\n', /data after the object/);
  refuses(t, '{"model":"gpt-4o"}garbage', /data after the object/);
  refuses(t, '{"model":"gpt-4o"}\u0000', /data after the object/);
  refuses(t, '{"model":"gpt-4o"}}', /data after the object/);
  refuses(t, '{"model":"gpt-4o"', /ends inside/);
  refuses(t, '{"model":', /ends where a value should be/);
  refuses(t, '{"model":"gpt-4o', /not terminated/);
});

test('refused: duplicate keys at any depth, compared after unescaping', (t) => {
  refuses(t, '{"model":"gpt-4o","model":"gpt-4o-mini"}', /same key twice/);
  refuses(t, '{"model":"gpt-4o","mod\\u0065l":"gpt-4o-mini"}', /same key twice/);
  refuses(t, '{"mod\\u0065l":"gpt-4o","model":"gpt-4o-mini"}', /same key twice/);
  refuses(t, '{"\\u006dodel":"gpt-4o","mod\\u0065l":"gpt-4o-mini"}', /same key twice/);
  refuses(t, '{"a\\/b":1,"a/b":2}', /same key twice/);
  refuses(t, '{"\\ud83d\\ude00":1,"\u{1f600}":2}', /same key twice/);
  refuses(t, '{"session":{"model":"a","model":"b"}}', /same key twice/);
  refuses(t, '{"messages":[{"role":"user"},{"role":"user","role":"system"}]}', /same key twice/);
  refuses(t, '{"__proto__":{},"__proto__":{"model":"x"}}', /same key twice/);
  refuses(t, '{"__proto__":1,"__pr\\u006fto__":2}', /same key twice/);
  const deep = `${'{"a":'.repeat(40)}{"k":1,"k":2}${'}'.repeat(40)}`;
  refuses(t, deep, /same key twice/);
});

test('duplicates are found in large objects too, whichever side of the switch to a key set they fall', (t) => {
  const keys = Array.from({ length: 40 }, (_, i) => `k${i}`);
  const object = (names: string[]) => `{${names.map((k, i) => `${JSON.stringify(k)}:${i}`).join(',')}}`;
  t.is(refusal(object(keys)), null);
  for (const [a, b] of [
    [3, 10],
    [3, 20],
    [17, 35],
    [0, 39],
  ] as const) {
    const names = [...keys];
    names[b] = keys[a]!;
    refuses(t, object(names), /same key twice/);
  }
  // An escaped key switches a small object to decoded comparison; the plain keys before it still count.
  refuses(t, '{"model":1,"x":2,"mod\\u0065l":3}', /same key twice/);
  refuses(t, '{"x\\u0031":1,"model":2,"model":3}', /same key twice/);
});

test('the same key in different objects is not a duplicate', (t) => {
  const text = '{"a":{"a":{"a":1}},"b":[{"a":1},{"a":2},{"a":{"a":3}}],"c":{"a":1,"b":{"a":2}},"d":{"a":1}}';
  t.deepEqual(parseStrictJson(Buffer.from(text)), JSON.parse(text));
});

test('__proto__ is an ordinary key: it neither sets the prototype nor hides a duplicate', (t) => {
  const parsed = parseStrictJson(Buffer.from('{"__proto__":{"model":"gpt-4o","polluted":true},"messages":[]}'));
  t.is(Object.getPrototypeOf(parsed), Object.prototype);
  t.true(Object.hasOwn(parsed, '__proto__'));
  t.is(parsed.model, undefined);
  t.is(({} as Record<string, unknown>).polluted, undefined);
  t.deepEqual(Object.keys(parsed), ['__proto__', 'messages']);
});

test('refused: NaN, Infinity and every other token JSON does not define', (t) => {
  for (const token of ['NaN', 'Infinity', '-Infinity', 'undefined', 'True', 'nul', 'nulll', "'x'", '0x10', '01', '+1', '.5', '1.', '1e', '1e+', '-', '--1', '1_000']) {
    t.not(refusal(`{"temperature":${token}}`), null, token);
  }
  refuses(t, '{"temperature":NaN}', /NaN, Infinity and bare words/);
  refuses(t, '{"model":"gpt-4o",}', /key is not a string/);
  refuses(t, '{"messages":[1,]}', /not JSON/);
  refuses(t, '{"a":1 /* comment */}', /comma or closing bracket/);
  refuses(t, '{model:"gpt-4o"}', /key is not a string/);
  refuses(t, "{'model':'gpt-4o'}", /key is not a string/);
  refuses(t, '{"a" 1}', /colon is missing/);
  refuses(t, '{"a":1 "b":2}', /comma or closing bracket/);
  refuses(t, '{"a":[1}', /comma or closing bracket/);
  refuses(t, '{"a":{]}', /key is not a string/);
  refuses(t, '{"a":\u00a01}', /not JSON/);
});

test('refused: strings JSON does not define, and strings parsers read differently', (t) => {
  refuses(t, '{"content":"a\nb"}', /raw control character/);
  refuses(t, '{"content":"a\u0000b"}', /raw control character/);
  refuses(t, '{"content":"a\\x41"}', /invalid escape/);
  refuses(t, "{\"content\":\"a\\'\"}", /invalid escape/);
  refuses(t, '{"content":"a\\u12"}', /four hex digits/);
  refuses(t, '{"content":"a\\u12', /cut short/);
  refuses(t, '{"content":"\\ud800"}', /lone surrogate/);
  refuses(t, '{"content":"\\udc00\\ud800"}', /lone surrogate/);
  refuses(t, '{"content":"\\ud800\\u0041"}', /lone surrogate/);
  refuses(t, '{"\\udfff":1}', /lone surrogate/);
  t.deepEqual(parseStrictJson(Buffer.from('{"content":"\\uD83D\\uDE00\\u0000"}')), { content: '\u{1f600}\u0000' });
});

test('refused: numbers too large for a double, which parsers read as Infinity or refuse', (t) => {
  refuses(t, '{"max_tokens":1e400}', /too large/);
  refuses(t, '{"max_tokens":-1E+309}', /too large/);
  refuses(t, `{"max_tokens":${'9'.repeat(400)}}`, /too large/);
  t.deepEqual(parseStrictJson(Buffer.from('{"a":1e308,"b":1e-400,"c":-0.0e0}')), { a: 1e308, b: 0, c: -0 });
  t.deepEqual(parseStrictJson(Buffer.from(`{"a":${'9'.repeat(300)}}`)), { a: Number('9'.repeat(300)) });
});

test(`nesting: ${MAX_JSON_DEPTH} levels are read, one more is refused`, (t) => {
  const nest = (depth: number, open: string, close: string) => `{"a":${open.repeat(depth - 1)}1${close.repeat(depth - 1)}}`;
  t.notThrows(() => parseStrictJson(Buffer.from(nest(MAX_JSON_DEPTH, '[', ']'))));
  t.notThrows(() => parseStrictJson(Buffer.from(nest(MAX_JSON_DEPTH, '{"a":', '}'))));
  refuses(t, nest(MAX_JSON_DEPTH + 1, '[', ']'), /deeper than 64/);
  refuses(t, nest(MAX_JSON_DEPTH + 1, '{"a":', '}'), /deeper than 64/);
  refuses(t, `{"a":${'['.repeat(100000)}`, /deeper than 64/);
});

test('refusals never quote the body', (t) => {
  for (const body of ['{"secret-key-name":1,"secret-key-name":2}', '{"a":"secret\\q"}', '{"a":secret}', '{"a":1}secret', '{"secret":1e999}']) {
    const err = refusal(body);
    t.truthy(err);
    t.false(err!.message.includes('secret'), err!.message);
  }
});

// ---------------------------------------------------------------------------- properties

/** Objects of any JSON values, with keys and strings over all of Unicode (JSON.stringify escapes what it must). */
const jsonObject = fc.dictionary(fc.string({ unit: 'binary', maxLength: 12 }), fc.jsonValue({ stringUnit: 'binary', maxDepth: 8 }), { maxKeys: 12 });

test('property: every JSON object without duplicate keys is read exactly as JSON.parse reads it', (t) => {
  fc.assert(
    fc.property(jsonObject, fc.boolean(), (value, pretty) => {
      const text = JSON.stringify(value, null, pretty ? 2 : undefined);
      assert.deepStrictEqual(parseStrictJson(Buffer.from(text)), JSON.parse(text));
    }),
    { seed: SEED, numRuns: 2000 },
  );
  t.pass();
});

/** Text near JSON: tokens and their near misses, valid JSON with a character inserted, removed or replaced, and anything. */
const almostJson = fc.oneof(
  fc.array(
    fc.constantFrom('{', '}', '[', ']', ':', ',', ' ', '\n', '"', '"a"', '"b"', '\\', '\\u0041', '\\ud800', '1', '-', '0', '.', 'e', '1e999', 'true', 'nul', 'null', 'NaN', '\u0000', '\ufeff', 'é'),
    { maxLength: 30 },
  ).map((tokens) => tokens.join('')),
  fc
    .tuple(jsonObject, fc.nat(), fc.nat(), fc.constantFrom('', ',', '}', ']', '"', '\\', ' ', '0', 'x', '\u0001'))
    .map(([value, at, cut, insert]) => {
      const text = JSON.stringify(value);
      const i = at % (text.length + 1);
      return text.slice(0, i) + insert + text.slice(i + (cut % 2));
    }),
  fc.string({ unit: 'binary', maxLength: 40 }),
);

test('property: nothing JSON.parse refuses is accepted, and what is accepted reads as JSON.parse reads it', (t) => {
  fc.assert(
    fc.property(almostJson, (text) => {
      const bytes = Buffer.from(text, 'utf8');
      let parsed: Record<string, unknown>;
      try {
        parsed = parseStrictJson(bytes);
      } catch (err) {
        if (err instanceof GatewayError && err.code === 'invalid_request') return;
        throw err;
      }
      assert.deepStrictEqual(parsed, JSON.parse(bytes.toString('utf8')));
    }),
    { seed: SEED + 1, numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (raw) => {
      const bytes = Buffer.from(raw);
      if (refusal(bytes) !== null) return;
      const text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
      assert.deepStrictEqual(parseStrictJson(bytes), JSON.parse(text));
    }),
    { seed: SEED + 2, numRuns: 2000 },
  );
  t.pass();
});

/** A key spelled with one character as \u escapes (both halves of a surrogate pair), as JSON allows. */
function escapedSpelling(key: string, at: number): string {
  const units = [...key];
  if (units.length === 0) return '""';
  const i = at % units.length;
  const point = units[i]!;
  let escaped = '';
  for (let k = 0; k < point.length; k++) escaped += `\\u${point.charCodeAt(k).toString(16).padStart(4, '0')}`;
  return `"${units.slice(0, i).map(quoteInner).join('')}${escaped}${units.slice(i + 1).map(quoteInner).join('')}"`;
}

function quoteInner(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}

const duplicateCase = fc.record({
  key: fc.oneof(fc.constantFrom('model', '__proto__', 'constructor', ''), fc.string({ unit: 'binary', maxLength: 8 })),
  others: fc.uniqueArray(fc.string({ unit: 'binary', maxLength: 8 }), { maxLength: 24 }),
  values: fc.tuple(fc.jsonValue({ maxDepth: 2 }), fc.jsonValue({ maxDepth: 2 })),
  positions: fc.tuple(fc.nat(), fc.nat()),
  spelling: fc.oneof(fc.constant(null), fc.nat()),
  wrappers: fc.array(fc.oneof(fc.constant('object' as const), fc.constant('array' as const)), { maxLength: MAX_JSON_DEPTH - 2 }),
});

test('property: an object with a key given twice, at any depth and however spelled, is refused', (t) => {
  fc.assert(
    fc.property(duplicateCase, ({ key, others, values, positions, spelling, wrappers }) => {
      const members = others.filter((k) => k !== key).map((k, i) => `${JSON.stringify(k)}:${i}`);
      const first = Math.min(positions[0] % (members.length + 1), members.length);
      members.splice(first, 0, `${JSON.stringify(key)}:${JSON.stringify(values[0])}`);
      const second = first + 1 + (positions[1] % (members.length - first));
      members.splice(second, 0, `${spelling === null ? JSON.stringify(key) : escapedSpelling(key, spelling)}:${JSON.stringify(values[1])}`);
      let text = `{${members.join(',')}}`;
      for (const wrapper of wrappers) text = wrapper === 'object' ? `{"w":${text},"x":{}}` : `[0,${text},{}]`;
      if (text.startsWith('[')) text = `{"outer":${text}}`;
      assert.match(refusal(text)?.message ?? 'accepted', /same key twice/, text);
    }),
    { seed: SEED + 3, numRuns: 2000 },
  );
  t.pass();
});
