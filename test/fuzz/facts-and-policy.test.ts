import test from 'ava';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { ConfigError } from '../../gateway/config/yaml-source.js';
import { GatewayError } from '../../gateway/errors/catalogue.js';
import { parseGovernanceMetadata, toMetadata } from '../../gateway/facts/governance-metadata.js';
import { operationFromPath } from '../../gateway/facts/operation.js';
import { describeBody, type BodyFacts } from '../../gateway/facts/request-body.js';
import { compilePolicySource } from '../../gateway/policy/compile-policy.js';
import { evaluate } from '../../gateway/policy/evaluate.js';
import type { CompiledPolicy } from '../../gateway/policy/policy-types.js';
import type { MetadataValue, RequestFacts } from '../../gateway/policy/request-facts.js';
import { SHIPPED_POLICY } from '../helpers/gateway-harness.js';
import { bodyBytes, metadataCase, multipartCase, nonMultipartContentType, objectText, validMetadataEntries } from './arbitraries.js';
import { isJsonType, isObject, lenientJson, strictJson } from './support.js';

/**
 * In-process fuzzing of the pure stages every request goes through: body
 * facts, governance metadata, operation names, policy compilation and
 * evaluation. Client input may only ever be refused with a GatewayError and a
 * policy file only with a ConfigError; anything else escaping these functions
 * would surface as a 500 or a crashed reload.
 *
 * Budget (fixed seeds, so a CI failure replays locally):
 *   describeBody          4,000 + 2,000 (JSON agreement) + 2,000 (multipart agreement)
 *   metadata              3,000
 *   operationFromPath     2,000
 *   compilePolicySource   3,000 (random and mutated text) + 40 (deep nesting) + 1,000 (schema-valid) + 300 (mapping spellings)
 *   total                17,340 cases; the HTTP suite (gateway-http.test.ts) adds 11,500.
 */

const SEED = 20261127;
/** Every property runs from a fixed seed; a failure report carries the error, the seed and the shrunk input. */
const RUN = { includeErrorInReport: true } as const;
const NAME = 'fuzz-policy.yaml';

/** Runs describeBody, letting only a GatewayError through as a refusal. */
function facts(contentType: string | undefined, body: Buffer): BodyFacts | GatewayError {
  try {
    return describeBody(contentType, body);
  } catch (err) {
    if (err instanceof GatewayError) {
      if (err.code !== 'invalid_request' || err.status !== 400) throw new Error(`refusal with ${err.code}/${err.status}, expected invalid_request/400`);
      return err;
    }
    throw new Error(`describeBody threw a ${(err as Error)?.constructor?.name}: ${String(err)}`);
  }
}

function assertSaneFacts(f: BodyFacts): void {
  if (f.model !== null && (typeof f.model !== 'string' || f.model.length === 0 || f.model.length > 256)) throw new Error(`model fact ${JSON.stringify(f.model)}`);
  if (typeof f.stream !== 'boolean') throw new Error('stream fact is not a boolean');
  if (f.maxTokens !== null && !(typeof f.maxTokens === 'number' && Number.isFinite(f.maxTokens) && f.maxTokens >= 0)) throw new Error(`maxTokens fact ${f.maxTokens}`);
  for (const count of [f.messages, f.tools]) {
    if (count !== null && !(Number.isInteger(count) && count >= 0)) throw new Error(`count fact ${count}`);
  }
}

const contentTypeAndBody = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(nonMultipartContentType, bodyBytes) },
  multipartCase.map((c) => [c.contentType, c.body] as [string, Buffer]),
  // A multipart label on a body that is not multipart.
  fc.tuple(fc.constantFrom('multipart/form-data', 'multipart/form-data; boundary=', 'multipart/form-data; boundary=""', 'multipart/form-data; boundary=abc'), bodyBytes),
);

test('describeBody yields sane facts or refuses with invalid_request, and refuses declared JSON that does not parse', (t) => {
  fc.assert(
    fc.property(contentTypeAndBody, ([contentType, body]) => {
      const result = facts(contentType, body);
      if (result instanceof GatewayError) return;
      assertSaneFacts(result);
      if (isJsonType(contentType) && body.length > 0 && lenientJson(body) === undefined) {
        throw new Error('a body declared as JSON that does not parse was accepted');
      }
    }),
    { ...RUN, seed: SEED, numRuns: 4000 },
  );
  t.pass();
});

test('the model, token cap and message count the policy sees are those a JSON parser reads from the same bytes, whatever the declared type', (t) => {
  fc.assert(
    fc.property(fc.tuple(nonMultipartContentType, bodyBytes), ([contentType, body]) => {
      const result = facts(contentType, body);
      const parsed = strictJson(body);
      if (result instanceof GatewayError || parsed === undefined || !isObject(parsed.value)) return;
      const o = parsed.value;
      if (typeof o.model === 'string' && result.model !== o.model) {
        throw new Error(`provider reads model ${JSON.stringify(o.model)}, policy saw ${JSON.stringify(result.model)}`);
      }
      for (const field of ['max_tokens', 'max_completion_tokens', 'max_output_tokens']) {
        const cap = o[field];
        if (typeof cap === 'number' && cap >= 0 && (result.maxTokens === null || result.maxTokens < cap)) {
          throw new Error(`provider reads ${field}=${cap}, policy saw max_tokens ${result.maxTokens}`);
        }
      }
      if (Array.isArray(o.messages) && result.messages !== o.messages.length) {
        throw new Error(`${o.messages.length} messages, policy counted ${result.messages}`);
      }
    }),
    { ...RUN, seed: SEED + 1, numRuns: 2000 },
  );
  t.pass();
});

/** What a strict multipart/form-data parser (the WHATWG one in Node) reads as the model fields, or null when it refuses the body. */
async function strictFormModels(contentType: string, body: Buffer): Promise<(string | 'file')[] | null> {
  try {
    const form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
    return form.getAll('model').map((v) => (typeof v === 'string' ? v : 'file'));
  } catch {
    return null;
  }
}

/**
 * The policy must judge the model the provider will serve. When a standard
 * parser reads exactly one model field, the gateway must read the same one or
 * refuse the upload; reading none (which skips the model rules) or another is
 * a bypass. Several model fields must be refused.
 */
async function assertSameMultipartModel(contentType: string, body: Buffer): Promise<void> {
  const result = facts(contentType, body);
  const models = await strictFormModels(contentType, body);
  if (result instanceof GatewayError || models === null) return;
  const shown = JSON.stringify({ contentType, body: body.toString('utf8') });
  if (models.length === 0 && result.model !== null) throw new Error(`no model field, policy saw ${JSON.stringify(result.model)}: ${shown}`);
  if (models.length === 1 && typeof models[0] === 'string' && models[0] !== 'file' && result.model !== models[0]) {
    throw new Error(`provider reads model ${JSON.stringify(models[0])}, policy saw ${JSON.stringify(result.model)}: ${shown}`);
  }
  if (models.length > 1) throw new Error(`${models.length} model fields accepted, policy saw ${JSON.stringify(result.model)}: ${shown}`);
}

test('multipart uploads: the model the policy sees is the one a standard form-data parser reads, or the upload is refused', async (t) => {
  await fc.assert(
    fc.asyncProperty(multipartCase, ({ contentType, body }) => assertSameMultipartModel(contentType, body)),
    { ...RUN, seed: SEED + 2, numRuns: 2000 },
  );
  t.pass();
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

const LOWER_WORD = /^[a-z][a-z_]*$/;

const pathSegment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('chat', 'completions', 'embeddings', 'files', 'file-abc123', 'content', 'images', 'generations', 'fine_tuning', 'jobs', 'ftjob-XYZ', 'Chat', '{id}', 'a.b') },
  fc.webSegment(),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.constantFrom('', '.', '..', '%2e%2e', '%2F', ';x', 'x'.repeat(70)),
);
const pathname = fc
  .tuple(fc.constantFrom('/v1/', '/v1/', '/', '', '//', '/v1', '/V1/', 'v1/'), fc.array(pathSegment, { maxLength: 8 }), fc.constantFrom('', '/', '//'))
  .map(([prefix, segments, suffix]) => prefix + segments.join('/') + suffix);

test('operationFromPath: slashes become dots, only lowercase words survive, and no id or other client text leaks into the operation', (t) => {
  fc.assert(
    fc.property(pathname, (p) => {
      const op = operationFromPath(p);
      if (typeof op !== 'string' || op === '') throw new Error(`operation ${JSON.stringify(op)} for ${JSON.stringify(p)}`);
      if (op !== 'root' && !op.split('.').every((part) => part === '{id}' || LOWER_WORD.test(part))) {
        throw new Error(`operation ${JSON.stringify(op)} for ${JSON.stringify(p)} carries client text`);
      }
      // The router forwards /v1/ paths with and without a trailing slash: both must be judged as the same operation.
      if (p.startsWith('/v1/') && operationFromPath(`${p}/`) !== op) throw new Error(`a trailing slash changes the operation of ${JSON.stringify(p)}`);
    }),
    { ...RUN, seed: SEED + 4, numRuns: 1500 },
  );
  fc.assert(
    fc.property(fc.array(fc.stringMatching(/^[a-z][a-z_]{0,20}$/), { minLength: 1, maxLength: 5 }), (words) => {
      const op = operationFromPath(`/v1/${words.join('/')}`);
      if (op !== words.join('.')) throw new Error(`/v1/${words.join('/')} → ${op}`);
    }),
    { ...RUN, seed: SEED + 5, numRuns: 500 },
  );
  t.pass();
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
    let text = SHIPPED_POLICY;
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

test('regression: a parameter that merely ends in "boundary" does not pick the multipart boundary', async (t) => {
  // Shrunk from the multipart property (seed 20261129): the policy read the decoy framed by `xboundary`.
  await t.notThrowsAsync(
    assertSameMultipartModel(
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
  t.deepEqual(await strictFormModels(contentType, body), ['forbidden-model'], 'the premise: a form-data parser reads forbidden-model');
  const result = facts(contentType, body);
  t.true(result instanceof GatewayError || result.model === 'forbidden-model', `policy saw ${JSON.stringify(result instanceof GatewayError ? result.code : result.model)}`);
});

test('regression: a part with two Content-Disposition headers is refused or read as a form-data parser reads it', async (t) => {
  // Shrunk from the multipart property with decoy parameters excluded: the gateway reads the first header, parsers the last.
  await t.notThrowsAsync(
    assertSameMultipartModel(
      'multipart/form-data; boundary=.-.z; charset=utf-8',
      Buffer.from('--.-.z\r\nContent-Disposition: form-data; name="model"\r\nContent-Disposition: form-data; name="file"\r\n\r\ngpt-4o-mini\r\n--.-.z--\r\n'),
    ),
  );

  // The other way round it is a bypass: the gateway sees no model, so no model rule or allow-list applies, while the provider serves one.
  const contentType = 'multipart/form-data; boundary=BBB';
  const body = Buffer.from('--BBB\r\nContent-Disposition: form-data; name="file"\r\nContent-Disposition: form-data; name="model"\r\n\r\nforbidden-model\r\n--BBB--\r\n');
  t.deepEqual(await strictFormModels(contentType, body), ['forbidden-model'], 'the premise: a form-data parser reads forbidden-model');
  const result = facts(contentType, body);
  t.true(result instanceof GatewayError || result.model === 'forbidden-model', `policy saw ${JSON.stringify(result instanceof GatewayError ? result.code : result.model)}`);
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
