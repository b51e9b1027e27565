import fc from 'fast-check';

/**
 * Generators of hostile request input shared by the in-process and the HTTP
 * fuzz suites. They aim at the places a gateway and a provider could read
 * the same bytes differently: JSON with wrong types, multipart framing,
 * metadata shapes and sizes.
 */

/** A value of any JSON type but the expected one. */
export const wrongType: fc.Arbitrary<unknown> = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }),
);

const tokenCap: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.nat({ max: 200_000 }) },
  fc.integer({ min: -10, max: -1 }),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constant(1e308),
  wrongType,
);

/** An OpenAI-style request object whose fields are sometimes right and sometimes of the wrong type. */
export const requestObject: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    model: fc.oneof(
      { weight: 3, arbitrary: fc.constantFrom('gpt-4o-mini', 'text-embedding-3-small', 'whisper-1', 'o1', 'ft:gpt-4o:acme::x1') },
      fc.string({ unit: 'grapheme', maxLength: 300 }),
      fc.string({ minLength: 250, maxLength: 270 }),
      wrongType,
    ),
    messages: fc.oneof(
      fc.array(fc.record({ role: fc.constantFrom('user', 'system', 'assistant', 'tool'), content: fc.oneof(fc.string({ unit: 'binary', maxLength: 40 }), wrongType) }), { maxLength: 5 }),
      wrongType,
    ),
    input: fc.oneof(fc.array(fc.string({ maxLength: 10 }), { maxLength: 4 }), wrongType),
    max_tokens: tokenCap,
    max_completion_tokens: tokenCap,
    max_output_tokens: tokenCap,
    stream: fc.oneof({ weight: 2, arbitrary: fc.boolean() }, wrongType),
    stream_options: fc.oneof(fc.record({ include_usage: fc.boolean() }), wrongType),
    tools: fc.oneof(fc.array(fc.jsonValue({ maxDepth: 2 }), { maxLength: 4 }), wrongType),
  },
  { requiredKeys: [] },
);

/** JSON whose text itself is unusual: numbers out of range, duplicate keys, escapes, junk around it. */
const oddJsonText: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '{"model":"gpt-4o-mini","max_tokens":1e999}',
    '{"model":"gpt-4o-mini","max_tokens":-0}',
    '{"model":"gpt-4o-mini","max_tokens":-1e-999}',
    '{"model":"gpt-4o-mini","max_tokens":00}',
    '{"model":"gpt-4o-mini","max_tokens":0x10}',
    '{"model":"gpt-4o-mini","max_tokens":NaN}',
    '{"model":"gpt-4o-mini","max_tokens":Infinity}',
    '{"mod\\u0065l":"gpt-4o-mini"}',
    '{"model":"gpt-4o-mini",}',
    "{'model':'gpt-4o-mini'}",
    '{"model":"gpt-4o-mini"} trailing',
    '{"model":"\\ud800"}',
    '{"model":"\\u0000"}',
    '{"__proto__":{"model":"x"},"model":"gpt-4o-mini"}',
    '{"constructor":{"prototype":{"model":"x"}}}',
    '{}',
    '[]',
    'null',
    '"model"',
    '{',
    '}',
  ),
  fc.tuple(fc.jsonValue({ maxDepth: 1 }), fc.jsonValue({ maxDepth: 1 })).map(([a, b]) => `{"model":${JSON.stringify(a)},"model":${JSON.stringify(b)}}`),
  fc.tuple(fc.constantFrom('max_tokens', 'max_completion_tokens', 'max_output_tokens'), fc.nat(), fc.nat()).map(([k, a, b]) => `{"model":"gpt-4o-mini","${k}":${a},"${k}":${b}}`),
);

/** Nesting deep enough to exhaust a recursive parser, sometimes unbalanced. */
const deepJsonText: fc.Arbitrary<string> = fc
  .tuple(fc.integer({ min: 1, max: 12_000 }), fc.constantFrom('[', '{"a":'), fc.boolean())
  .map(([depth, open, balanced]) => {
    const close = open === '[' ? ']' : '}';
    return `${open.repeat(depth)}1${balanced ? close.repeat(depth) : close.repeat(Math.floor(depth / 2))}`;
  });

/** A `/v1/check` question whose fields are sometimes right and sometimes of the wrong type. */
const checkQuestion: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    model: fc.oneof({ weight: 3, arbitrary: fc.constantFrom('gpt-4o-mini', 'o1') }, fc.string({ minLength: 250, maxLength: 270 }), wrongType),
    operation: fc.oneof({ weight: 3, arbitrary: fc.constantFrom('chat.completions', 'embeddings', 'files.{id}') }, fc.string({ unit: 'grapheme', maxLength: 300 }), wrongType),
    metadata: fc.oneof(
      { weight: 2, arbitrary: fc.dictionary(fc.constantFrom('contains_pii', 'data_classification', 'team'), fc.oneof(fc.boolean(), fc.constantFrom('restricted', 'internal'), fc.integer())) },
      wrongType,
    ),
    max_tokens: tokenCap,
    stream: fc.oneof(fc.boolean(), wrongType),
  },
  { requiredKeys: [] },
);

export const jsonishText: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: requestObject.map((o) => JSON.stringify(o)) },
  { weight: 2, arbitrary: checkQuestion.map((o) => JSON.stringify(o)) },
  { weight: 2, arbitrary: fc.json({ maxDepth: 4 }) },
  { weight: 2, arbitrary: oddJsonText },
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ maxLength: 200 }),
  deepJsonText,
);

/** Bytes as they arrive: a BOM or whitespace in front sometimes, invalid UTF-8 sometimes. */
export const bodyBytes: fc.Arbitrary<Buffer> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .tuple(fc.constantFrom('', '', '', '\uFEFF', ' \n\t', '\r\n'), jsonishText)
      .map(([prefix, text]) => Buffer.from(prefix + text, 'utf8')),
  },
  fc.uint8Array({ maxLength: 1024 }).map((a) => Buffer.from(a)),
  fc.constant(Buffer.alloc(0)),
  // A valid object with one byte of invalid UTF-8 inside a string.
  fc.constantFrom(Buffer.from('{"model":"gpt-4o-mini","x":"\xff"}', 'latin1'), Buffer.from('{"model":"gpt-\xc3"}', 'latin1')),
);

export const nonMultipartContentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('application/json', 'application/json; charset=utf-8', 'APPLICATION/JSON', ' application/json ;charset=UTF-8') },
  fc.constantFrom(undefined, 'text/plain', 'application/x-www-form-urlencoded', 'application/vnd.openai+json', 'application/octet-stream', 'application/json-seq', 'text/json', ''),
  fc.string({ maxLength: 40 }),
);

/** Boundary characters a client may pick; the ones outside an HTTP token need the parameter quoted. */
const boundary = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[A-Za-z0-9'+_.-]{1,40}$/) },
  fc.stringMatching(/^[A-Za-z0-9'()+_,./:=?-]{1,40}$/),
);
const MODEL_VALUES = ['gpt-4o-mini', 'whisper-1', 'gpt-4o-transcribe', 'dall-e-2', 'forbidden-model'];

interface PartSpec {
  dispositions: string[];
  contentType: string | null;
  value: string;
}

/** Mostly the standard spelling; each rarer choice varies one thing parsers are known to disagree on. */
const usually = <T>(standard: T, ...rare: T[]): fc.Arbitrary<T> => fc.oneof({ weight: 6, arbitrary: fc.constant(standard) }, fc.constantFrom(...rare));

const dispositionLine: fc.Arbitrary<string> = fc
  .record({
    header: usually('Content-Disposition', 'content-disposition', 'CONTENT-DISPOSITION'),
    name: fc.oneof({ weight: 5, arbitrary: fc.constant('model') }, fc.constantFrom('file', 'purpose', 'prompt', 'language', 'Model', 'model ', 'xmodel', 'model2')),
    param: usually('name', 'NAME', 'Name'),
    quoted: usually(true, false),
    separator: usually('; ', ';', ' ; ', ';\t'),
    filename: fc.option(fc.constantFrom('audio.wav', 'model', 'image.png'), { freq: 4 }),
    filenameFirst: fc.boolean(),
  })
  .map(({ header, name, param, quoted, separator, filename, filenameFirst }) => {
    const params = [`${param}=${quoted ? `"${name}"` : name}`];
    if (filename !== null) params[filenameFirst ? 'unshift' : 'push'](`filename="${filename}"`);
    return `${header}: form-data${params.map((p) => separator + p).join('')}`;
  });

/** A part whose value sometimes carries a whole decoy multipart body, framed by another boundary. */
const partSpec = (real: string, decoy: string): fc.Arbitrary<PartSpec> =>
  fc.record({
    dispositions: fc.oneof({ weight: 5, arbitrary: fc.array(dispositionLine, { minLength: 1, maxLength: 1 }) }, fc.array(dispositionLine, { minLength: 0, maxLength: 3 })),
    contentType: fc.option(fc.constantFrom('text/plain', 'audio/wav', 'application/octet-stream'), { freq: 3 }),
    value: fc.oneof(
      { weight: 4, arbitrary: fc.constantFrom(...MODEL_VALUES) },
      fc.string({ unit: 'grapheme-ascii', maxLength: 40 }),
      fc.constantFrom(...MODEL_VALUES).map((m) => `RIFF\r\n--${decoy}\r\nContent-Disposition: form-data; name="model"\r\n\r\n${m}\r\n--${decoy}--\r\n`),
      fc.constantFrom(...MODEL_VALUES).map((m) => `RIFF\r\n--${real}x\r\nContent-Disposition: form-data; name="model"\r\n\r\n${m}`),
    ),
  });

export interface MultipartCase {
  contentType: string;
  body: Buffer;
}

/** A boundary parameter as a client writes it: quoted when the boundary is not a token, sometimes anyway. */
function boundaryParam(name: string, value: string, quote: boolean): string {
  return quote || !/^[A-Za-z0-9'+_.-]+$/.test(value) ? `${name}="${value}"` : `${name}=${value}`;
}

/**
 * A multipart/form-data upload, mostly well formed, with the framing varied
 * where parsers are known to disagree: parameter names that merely end in
 * "boundary", quoting, header casing, repeated Content-Disposition lines,
 * boundary-prefixed lines and decoy bodies inside values, preamble and
 * epilogue, a missing close delimiter.
 */
export const multipartCase: fc.Arbitrary<MultipartCase> = fc
  .tuple(boundary, boundary.map((b) => `d${b}`))
  .chain(([real, decoy]) =>
    fc.record({
      contentType: fc
        .record({
          paramName: usually('boundary', 'BOUNDARY', 'Boundary'),
          quote: usually(false, true),
          decoyParam: fc.option(fc.constantFrom('x', 'my', 'old-', '_'), { freq: 3 }),
          charset: usually(false, true),
          decoyFirst: fc.boolean(),
        })
        .map(({ paramName, quote, decoyParam, charset, decoyFirst }) => {
          const params = [boundaryParam(paramName, real, quote)];
          if (decoyParam !== null) params[decoyFirst ? 'unshift' : 'push'](boundaryParam(`${decoyParam}boundary`, decoy, false));
          if (charset) params.push('charset=utf-8');
          return `multipart/form-data; ${params.join('; ')}`;
        }),
      preamble: usually('', 'preamble\r\n', `--${real}x\r\n`, `--${decoy}\r\nContent-Disposition: form-data; name="model"\r\n\r\ngpt-4o-mini\r\n`),
      parts: fc.array(partSpec(real, decoy), { minLength: 0, maxLength: 4 }),
      close: usually(`--${real}--\r\n`, `--${real}--`, `--${real}--\r\nepilogue`, '', `--${real}x--\r\n`),
      padding: usually('', ' ', '\t '),
    }).map(({ contentType, preamble, parts, close, padding }) => {
      let text = preamble;
      for (const part of parts) {
        const headers = [...part.dispositions];
        if (part.contentType !== null) headers.push(`Content-Type: ${part.contentType}`);
        text += `--${real}${padding}\r\n${headers.join('\r\n')}\r\n\r\n${part.value}\r\n`;
      }
      return { contentType, body: Buffer.from(text + close, 'utf8') };
    }),
  );

/** Metadata keys, with the ones the shipped policy reads and the ones that haunt plain objects. */
const metadataKey = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('contains_pii', 'data_classification', 'team', 'purpose') },
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'valueOf'),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
);
const metadataScalar = fc.oneof(
  fc.boolean(),
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom('restricted', 'secret', 'internal', 'public', 'true', ''),
  fc.string({ unit: 'grapheme', maxLength: 60 }),
);

/** JSON text of a flat object: built by hand so that keys such as __proto__ survive as plain keys. */
export function objectText(entries: readonly (readonly [string, unknown])[]): string {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`).join(',')}}`;
}

/** JSON text as a header can carry it: everything beyond printable ASCII escaped, so the bytes are the text. */
export function asciiJson(text: string): string {
  return text.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export const validMetadataEntries: fc.Arbitrary<[string, string | number | boolean][]> = fc.uniqueArray(fc.tuple(metadataKey, metadataScalar), {
  maxLength: 8,
  selector: ([k]) => k,
});

export type MetadataCase = { kind: 'valid'; header: string; value: Record<string, unknown> } | { kind: 'invalid'; header: string; why: string };

const PAD = 'x';

/** A header at a chosen byte length around the 4 KiB limit, made of ASCII only so length and bytes agree. */
const sizedMetadata: fc.Arbitrary<MetadataCase> = fc.tuple(validMetadataEntries, fc.integer({ min: 4080, max: 4110 })).map(([entries, target]) => {
  const head = asciiJson(objectText([...entries.filter(([k]) => k !== 'pad'), ['pad', '']]));
  return bySize(head.slice(0, -2) + PAD.repeat(Math.max(0, target - head.length)) + head.slice(-2));
});

/** A well-formed object is valid exactly when it fits in 4 KiB. */
function bySize(header: string): MetadataCase {
  return header.length <= 4096
    ? { kind: 'valid', header, value: JSON.parse(header) as Record<string, unknown> }
    : { kind: 'invalid', header, why: `${header.length} bytes, over 4 KiB` };
}

/** X-Governance-Metadata values: valid objects, and each way one can break the documented shape. */
export const metadataCase: fc.Arbitrary<MetadataCase> = fc.oneof(
  {
    weight: 3,
    arbitrary: validMetadataEntries.map((entries) => bySize(asciiJson(objectText(entries)))),
  },
  sizedMetadata,
  fc
    .tuple(validMetadataEntries, metadataKey, fc.oneof(fc.constant(null), fc.array(metadataScalar, { maxLength: 2 }), fc.dictionary(fc.string({ maxLength: 4 }), metadataScalar, { maxKeys: 2 })), fc.nat())
    .map(([entries, key, bad, at]): MetadataCase => {
      const rest = entries.filter(([k]) => k !== key);
      const all: [string, unknown][] = [...rest];
      all.splice(at % (rest.length + 1), 0, [key, bad]);
      return { kind: 'invalid', header: asciiJson(objectText(all)), why: `value of ${key} is not a scalar` };
    }),
  fc.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== 'object' || v === null || Array.isArray(v)).map((v): MetadataCase => ({ kind: 'invalid', header: asciiJson(JSON.stringify(v)), why: 'not an object' })),
  fc
    .string({ unit: fc.oneof(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }), fc.integer({ min: 0x80, max: 0xff }).map((c) => String.fromCharCode(c))), minLength: 1, maxLength: 80 })
    .map((s) => s.trim())
    .filter((s) => {
      if (s === '') return false;
      try {
        JSON.parse(s);
        return false;
      } catch {
        return true;
      }
    })
    .map((s): MetadataCase => ({ kind: 'invalid', header: s, why: 'not JSON' })),
  validMetadataEntries.map((entries): MetadataCase => {
    const header = asciiJson(objectText([...entries, ['pad', PAD.repeat(4100)]]));
    return { kind: 'invalid', header, why: `${header.length} bytes, over 4 KiB` };
  }),
);

// ---------------------------------------------------------------------------
// Request reading (read-request.ts): well-typed bodies, forms and query strings, so that most cases are accepted and
// the properties compare what was read; each arbitrary mixes in the near misses the gateway must refuse.

/** Model values: mostly valid names, sometimes each way a name is invalid (design decision 4). */
export const modelValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('gpt-4o-mini', 'whisper-1', 'dall-e-2', 'o1', 'ft:gpt-4o:acme::x1', 'text-embedding-3-small', 'forbidden-model') },
  { weight: 2, arbitrary: fc.stringMatching(/^[\x21-\x7e]{1,40}$/) },
  fc.constantFrom('', ' gpt-4o', 'gpt-4o ', 'gpt-4o\u0000', 'gpt\t4o', 'gpt-4o\n', 'gpt-4\u00f6', 'gpt-4o\u200b', 'x'.repeat(256), 'x'.repeat(257)),
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }),
  wrongType,
);

const count = (max: number): fc.Arbitrary<unknown> => fc.oneof({ weight: 12, arbitrary: fc.nat({ max }) }, fc.constant(null), fc.constant(Number.MAX_SAFE_INTEGER), wrongType);

/** A request object whose typed fields (model, caps, n, stream) are right most of the time. */
export const wellTypedRequest: fc.Arbitrary<Record<string, unknown>> = fc.record(
  {
    model: modelValue,
    messages: fc.oneof({ weight: 4, arbitrary: fc.array(fc.record({ role: fc.constantFrom('user', 'system'), content: fc.string({ maxLength: 20 }) }), { maxLength: 4 }) }, wrongType),
    input: fc.oneof(fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }), fc.string({ maxLength: 10 })),
    max_tokens: count(100_000),
    max_completion_tokens: count(100_000),
    max_output_tokens: count(100_000),
    n: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 1, max: 8 }) }, fc.constantFrom(0, -1, 1.5, null, '2', true)),
    stream: fc.oneof({ weight: 12, arbitrary: fc.boolean() }, fc.constant(null), wrongType),
    stream_options: fc.record({ include_usage: fc.boolean() }),
    tools: fc.array(fc.record({ type: fc.constant('function') }), { maxLength: 3 }),
    session: fc.oneof({ weight: 6, arbitrary: fc.record({ model: modelValue, type: fc.constant('realtime') }, { requiredKeys: ['model'] }) }, wrongType),
    purpose: fc.constantFrom('batch', 'assistants', 'fine-tune'),
    input_file_id: fc.oneof(fc.constantFrom('file-abc123', ''), wrongType),
    metadata: fc.dictionary(fc.string({ maxLength: 6 }), fc.string({ maxLength: 6 }), { maxKeys: 3 }),
  },
  // The model is always there (sometimes of the wrong type): most operations refuse a body without one.
  { requiredKeys: ['model'] },
);

/** A key written with its first character \u-escaped: the same key to every parser, other bytes. */
function escapedKey(key: string): string {
  return key === '' ? '""' : `"\\u${key.charCodeAt(0).toString(16).padStart(4, '0')}${JSON.stringify(key.slice(1)).slice(1)}`;
}

/** JSON text of an object from member texts (key and value already written), with `space` between tokens. */
function membersText(members: readonly (readonly [string, string])[], space: string): string {
  return `{${space}${members.map(([k, v]) => `${k}${space}:${space}${v}`).join(`,${space}`)}${space}}`;
}

/**
 * Request bodies as JSON text: well-typed objects with keys sometimes escaped and whitespace between tokens, and
 * sometimes a duplicate key (top level or nested in a message, escaped or not), which strict JSON refuses.
 */
export const requestJsonText: fc.Arbitrary<string> = fc
  .record({
    object: wellTypedRequest,
    escapes: fc.array(fc.boolean(), { minLength: 16, maxLength: 16 }),
    space: usually('', ' ', '\n', '\t\r\n '),
    duplicate: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, fc.record({ at: fc.nat(), escape: fc.boolean(), value: fc.jsonValue({ maxDepth: 1 }), nested: fc.boolean() })),
  })
  .map(({ object, escapes, space, duplicate }) => {
    const members: [string, string][] = Object.entries(object).map(([k, v], i) => [escapes[i % escapes.length]! ? escapedKey(k) : JSON.stringify(k), JSON.stringify(v)]);
    if (duplicate !== null) {
      if (duplicate.nested) {
        // A message object whose "role" is given twice, one level down.
        const message = `{"role":"user",${duplicate.escape ? escapedKey('role') : '"role"'}:"system","content":"hi"}`;
        const at = members.findIndex(([k]) => JSON.parse(k) === 'messages');
        if (at === -1) members.push(['"messages"', `[${message}]`]);
        else members[at] = [members[at]![0], `[${message}]`];
      } else if (members.length > 0) {
        const key = Object.keys(object)[duplicate.at % members.length]!;
        members.splice(duplicate.at % (members.length + 1), 0, [duplicate.escape ? escapedKey(key) : JSON.stringify(key), JSON.stringify(duplicate.value)]);
      }
    }
    return membersText(members, space);
  });

/** Query strings (with their `?`) that name the model zero, one or several times, in every spelling a parser decodes to `model`. */
export const querySearch: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', '?', '?model', '?model=', '?=x', '?&&'),
  fc.webQueryParameters().map((q) => `?${q}`),
  fc
    .array(
      fc.tuple(
        fc.oneof({ weight: 4, arbitrary: fc.constant('model') }, fc.constantFrom('Model', 'MODEL', '%6Dodel', '%6dodel', 'mod%65l', 'model%00', 'model%20', 'model+', 'models', 'api-version', 'foo')),
        fc.oneof(
          { weight: 3, arbitrary: fc.constantFrom('gpt-4o-realtime-preview', 'gpt-4o-mini', 'forbidden-model') },
          fc.string({ unit: 'grapheme', maxLength: 20 }).map(encodeURIComponent),
          fc.constantFrom('', '%20gpt', 'gpt+4o', 'gpt%00', '%zz', '%', 'a=b', '%E2%80%8B'),
        ),
      ),
      { maxLength: 4 },
    )
    .map((pairs) => `?${pairs.map(([n, v]) => `${n}=${v}`).join('&')}`),
  fc.string({ unit: fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)), maxLength: 30 }).map((s) => `?${s}`),
);

export interface FormPart {
  readonly name: string;
  readonly filename: string | null;
  readonly contentType: string | null;
  readonly data: Buffer;
}

export interface FormCase extends MultipartCase {
  readonly boundary: string;
  readonly parts: readonly FormPart[];
  /** Where each part's headers start and the closing delimiter ends: every prefix shorter than `complete` is unfinished. */
  readonly partStarts: readonly number[];
  readonly complete: number;
  /** The body text of each part's header block, so a case can break one. */
  readonly headerBlocks: readonly string[];
  /**
   * No preamble, no epilogue and a boundary not made of dashes alone: the WHATWG parser (undici 6, in Node 20)
   * refuses these, though RFC 2046 allows them.
   */
  readonly plain: boolean;
}

const formFieldName = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('model', 'file', 'purpose', 'prompt', 'language', 'response_format') },
  fc.constantFrom('Model', 'MODEL', 'Purpose', 'FILE', 'temperature', 'timestamp_granularities[]'),
  fc.stringMatching(/^[a-z_]{1,12}$/),
);

const formPart: fc.Arbitrary<FormPart> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      name: formFieldName,
      filename: fc.constant(null),
      contentType: fc.constant(null),
      data: fc.oneof(
        { weight: 3, arbitrary: modelValue.filter((v): v is string => typeof v === 'string') },
        fc.constantFrom('batch', 'assistants', 'json', 'en'),
        fc.string({ unit: 'grapheme', maxLength: 30 }),
      ).map((s) => Buffer.from(s, 'utf8')),
    }),
  },
  fc.record({
    name: formFieldName,
    filename: fc.constantFrom('audio.wav', 'image.png', 'batch.jsonl', 'model', 'a b.mp3', 'file.name.with.dots', 'r\u00e9sum\u00e9.txt'),
    contentType: fc.option(fc.constantFrom('audio/wav', 'image/png', 'application/jsonl', 'application/octet-stream'), { freq: 4 }),
    data: fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
      fc.constantFrom('{"custom_id":"1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini"}}\n', 'RIFF\r\n--x\r\n').map((s) => Buffer.from(s)),
    ),
  }),
);

/**
 * A well-formed multipart/form-data upload, in the standard spelling a client
 * library writes (header casing and an optional preamble and epilogue vary):
 * what a strict form-data parser reads from it is known part by part.
 */
export const formCase: fc.Arbitrary<FormCase> = fc
  .record({
    boundary: fc.oneof({ weight: 3, arbitrary: fc.stringMatching(/^[A-Za-z0-9'+_.-]{1,40}$/) }, fc.constant('----WebKitFormBoundary7MA4YWxkTrZu0gW')),
    quote: usually(false, true),
    // Most uploads name their model once, somewhere among the other parts; the rest exercise the refusals.
    parts: fc
      .tuple(
        fc.oneof(
          { weight: 3, arbitrary: fc.record({ name: usually('model', 'Model', 'MODEL'), value: fc.constantFrom('gpt-4o-mini', 'whisper-1', 'dall-e-2', 'gpt-image-1') }) },
          fc.constant(null),
        ),
        fc.array(formPart, { minLength: 0, maxLength: 4 }),
        fc.nat(),
      )
      .map(([model, rest, at]) => {
        if (model === null) return rest.length > 0 ? rest : [{ name: 'prompt', filename: null, contentType: null, data: Buffer.from('a cat') }];
        const parts = [...rest];
        parts.splice(at % (rest.length + 1), 0, { name: model.name, filename: null, contentType: null, data: Buffer.from(model.value) });
        return parts;
      }),
    headerName: usually('Content-Disposition', 'content-disposition'),
    preamble: usually('', 'This is a preamble.\r\n'),
    epilogue: usually('\r\n', '', '\r\nepilogue\r\n'),
  })
  .map(({ boundary, quote, parts, headerName, preamble, epilogue }) => {
    // A boundary the content happens to contain would end a part early (and undici 6 fails on a part that holds the
    // boundary anywhere, even without the dashes): extend it until no content holds it.
    let b = boundary;
    while (parts.some((p) => p.data.includes(b)) || preamble.includes(`--${b}`)) b += 'z';
    let text = Buffer.from(preamble);
    const starts: number[] = [];
    const blocks: string[] = [];
    for (const part of parts) {
      let head = `${headerName}: form-data; name="${part.name}"`;
      if (part.filename !== null) head += `; filename="${part.filename}"`;
      if (part.contentType !== null) head += `\r\nContent-Type: ${part.contentType}`;
      text = Buffer.concat([text, Buffer.from(`--${b}\r\n`)]);
      starts.push(text.length);
      blocks.push(head);
      text = Buffer.concat([text, Buffer.from(`${head}\r\n\r\n`), part.data, Buffer.from('\r\n')]);
    }
    text = Buffer.concat([text, Buffer.from(`--${b}--`)]);
    const complete = text.length;
    return {
      contentType: `multipart/form-data; ${boundaryParam('boundary', b, quote)}`,
      body: Buffer.concat([text, Buffer.from(epilogue)]),
      boundary: b,
      parts,
      partStarts: starts,
      complete,
      headerBlocks: blocks,
      plain: preamble === '' && (epilogue === '' || epilogue === '\r\n') && !/^-+$/.test(b),
    };
  });

export interface BrokenFormCase extends MultipartCase {
  readonly why: string;
}

/** Rebuilds a form case's body with one part's header block replaced. */
function withHeaderBlock(c: FormCase, index: number, block: string): Buffer {
  const at = c.partStarts[index]!;
  const end = at + Buffer.byteLength(c.headerBlocks[index]!);
  return Buffer.concat([c.body.subarray(0, at), Buffer.from(block), c.body.subarray(end)]);
}

/**
 * Multipart bodies no strict parser reads as a complete form: cut short at any
 * offset, without the closing delimiter, or with a part whose headers are
 * broken, unnamed, not form-data or transfer-encoded.
 */
export const brokenFormCase: fc.Arbitrary<BrokenFormCase> = formCase.chain((c) =>
  fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: c.complete - 1 }).map((cut): BrokenFormCase => ({ contentType: c.contentType, body: c.body.subarray(0, cut), why: `cut at byte ${cut} of ${c.complete}` })) },
    fc.constantFrom('', '\r\n', '--').map((tail): BrokenFormCase => ({
      contentType: c.contentType,
      body: Buffer.concat([c.body.subarray(0, c.complete - Buffer.byteLength(`--${c.boundary}--`)), Buffer.from(tail)]),
      why: `no closing delimiter (ends with ${JSON.stringify(tail)})`,
    })),
    fc
      .tuple(
        fc.nat(),
        fc.constantFrom(
          (block: string) => block.replace(/^[^:]*:/, 'Content-Language:'),
          (block: string) => block.replace(/^[^:]*: form-data/, 'Content-Disposition: attachment'),
          (block: string) => block.replace(/; name="[^"]*"/, ''),
          (block: string) => block.replace(/; name="[^"]*"/, '; name=""'),
          (block: string) => `${block}\r\nContent-Transfer-Encoding: base64`,
          (block: string) => `${block}\r\nContent-Transfer-Encoding: quoted-printable`,
          (block: string) => block.replace(/^([^:]*):/, '$1'),
          (block: string) => `${block}\r\nthis line has no colon`,
          (block: string) => `${block}\r\nBad Name: value`,
          (block: string) => block.replace(/name="([^"]*)"/, 'name="$1\\"x"'),
        ),
      )
      .map(([at, breakIt]): BrokenFormCase => {
        const index = at % c.parts.length;
        const block = breakIt(c.headerBlocks[index]!);
        return { contentType: c.contentType, body: withHeaderBlock(c, index, block), why: `part ${index} headers ${JSON.stringify(block)}` };
      }),
    fc.constantFrom('multipart/form-data', 'multipart/form-data; boundary=', 'multipart/form-data; boundary=""', `multipart/form-data; boundary=${c.boundary}x`).map((contentType): BrokenFormCase => ({
      contentType,
      body: c.body,
      why: 'the Content-Type names no boundary the body uses',
    })),
  ),
);
