import { GatewayError } from '../errors/catalogue.js';

/** The content-free facts a request body yields: identifiers, flags and counts only. */
export interface BodyFacts {
  readonly model: string | null;
  readonly stream: boolean;
  readonly maxTokens: number | null;
  readonly messages: number | null;
  readonly tools: number | null;
}

const NO_FACTS: BodyFacts = Object.freeze({ model: null, stream: false, maxTokens: null, messages: null, tools: null });

/**
 * Reads the facts the policy needs from the exact bytes that will be forwarded.
 * JSON bodies are parsed; multipart uploads (audio, image edits) only yield
 * their `model` field; bodies that are not JSON yield no facts.
 */
export function describeBody(contentType: string | undefined, body: Buffer): BodyFacts {
  if (body.length === 0) return NO_FACTS;
  const type = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type === 'multipart/form-data') return { ...NO_FACTS, model: multipartModel(contentType!, body) };
  // Providers may parse JSON whatever the declared type, so a JSON body is read
  // as JSON under any label: a mislabelled body must not slip past the model rules.
  return describeJson(body, !(type === 'application/json' || type.endsWith('+json')));
}

function describeJson(body: Buffer, guessed: boolean): BodyFacts {
  if (guessed && !startsLikeObject(body)) return NO_FACTS;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    if (guessed) return NO_FACTS;
    throw new GatewayError('invalid_request', 'request body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    if (guessed) return NO_FACTS;
    throw new GatewayError('invalid_request', 'request body must be a JSON object');
  }
  const o = parsed as Record<string, unknown>;
  if (o.model !== undefined && typeof o.model !== 'string') throw new GatewayError('invalid_request', 'model must be a string', { param: 'model' });
  return {
    model: o.model ?? null,
    stream: o.stream === true,
    maxTokens: firstNumber(o.max_tokens, o.max_completion_tokens, o.max_output_tokens),
    messages: Array.isArray(o.messages) ? o.messages.length : Array.isArray(o.input) ? o.input.length : null,
    tools: Array.isArray(o.tools) ? o.tools.length : null,
  };
}

function startsLikeObject(body: Buffer): boolean {
  for (const byte of body) {
    if (byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d) continue;
    return byte === 0x7b;
  }
  return false;
}

function firstNumber(...values: unknown[]): number | null {
  for (const v of values) if (typeof v === 'number' && Number.isFinite(v)) return v;
  return null;
}

/** Finds the `model` form field without parsing the (possibly large) uploaded files. */
function multipartModel(contentType: string, body: Buffer): string | null {
  const boundary = /boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const marker = boundary?.[1] ?? boundary?.[2]?.trim();
  if (!marker) throw new GatewayError('invalid_request', 'multipart body without a boundary');
  const delimiter = `--${marker}`;
  let at = body.indexOf(delimiter);
  while (at !== -1) {
    const headersEnd = body.indexOf('\r\n\r\n', at);
    if (headersEnd === -1) return null;
    const headers = body.subarray(at, headersEnd).toString('latin1');
    const next = body.indexOf(`\r\n${delimiter}`, headersEnd);
    if (/content-disposition:[^\r\n]*\bname="model"/i.test(headers)) {
      if (next === -1) return null;
      const value = body.subarray(headersEnd + 4, next).toString('utf8');
      return value.length > 0 && value.length <= 256 ? value : null;
    }
    at = next === -1 ? -1 : next + 2;
  }
  return null;
}
