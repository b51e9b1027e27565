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
