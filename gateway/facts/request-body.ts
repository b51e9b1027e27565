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
const MAX_MODEL_LENGTH = 256;
/** Every name a provider may read a token cap from; the policy holds the request to the largest. */
const TOKEN_CAP_FIELDS = ['max_tokens', 'max_completion_tokens', 'max_output_tokens'] as const;
const UTF8_BOM = 0xfeff;

/**
 * Reads the facts the policy needs from the exact bytes that will be forwarded.
 * JSON bodies are parsed whatever their declared type (providers may parse
 * them anyway, so a mislabelled body must not slip past the model rules);
 * multipart uploads (audio, image edits) yield their `model` field; other
 * bodies yield no facts. Anything a lenient provider could read differently
 * from the policy is refused as invalid.
 */
export function describeBody(contentType: string | undefined, body: Buffer): BodyFacts {
  if (body.length === 0) return NO_FACTS;
  const type = (contentType ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type === 'multipart/form-data') return { ...NO_FACTS, model: multipartModel(contentType!, body) };
  return describeJson(body, !(type === 'application/json' || type.endsWith('+json')));
}

function describeJson(body: Buffer, guessed: boolean): BodyFacts {
  if (guessed && !startsLikeObject(body)) return NO_FACTS;
  let text = body.toString('utf8');
  if (text.charCodeAt(0) === UTF8_BOM) text = text.slice(1);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    if (guessed) return NO_FACTS;
    throw new GatewayError('invalid_request', 'request body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    if (guessed) return NO_FACTS;
    throw new GatewayError('invalid_request', 'request body must be a JSON object');
  }
  const o = parsed as Record<string, unknown>;
  return {
    model: o.model === undefined ? null : checkedModel(o.model),
    stream: o.stream === true,
    maxTokens: tokenCap(o),
    messages: Array.isArray(o.messages) ? o.messages.length : Array.isArray(o.input) ? o.input.length : null,
    tools: Array.isArray(o.tools) ? o.tools.length : null,
  };
}

function checkedModel(model: unknown): string {
  if (typeof model !== 'string' || model.length === 0 || model.length > MAX_MODEL_LENGTH) {
    throw new GatewayError('invalid_request', `model must be a string of 1 to ${MAX_MODEL_LENGTH} characters`, { param: 'model' });
  }
  return model;
}

/** The largest cap the body states; a cap that is not a number is refused rather than ignored. */
function tokenCap(o: Record<string, unknown>): number | null {
  let cap: number | null = null;
  for (const field of TOKEN_CAP_FIELDS) {
    const value = o[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new GatewayError('invalid_request', `${field} must be a non-negative number`, { param: field });
    }
    cap = cap === null ? value : Math.max(cap, value);
  }
  return cap;
}

function startsLikeObject(body: Buffer): boolean {
  let i = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf ? 3 : 0;
  for (; i < body.length; i++) {
    const byte = body[i];
    if (byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d) continue;
    return byte === 0x7b;
  }
  return false;
}

/**
 * Finds the `model` form field without parsing the (possibly large) uploaded
 * files. A body that is not multipart, that names `model` twice, or whose parts
 * could be read two ways, is refused: providers differ on which reading wins.
 */
function multipartModel(contentType: string, body: Buffer): string | null {
  // The parameter named exactly `boundary` (names are case-insensitive), not one that merely ends in it.
  const boundary = /;\s*boundary=(?:"([^"]+)"|([^;]+))/i.exec(contentType);
  const marker = boundary?.[1] ?? boundary?.[2]?.trim();
  if (!marker) throw new GatewayError('invalid_request', 'multipart body without a boundary');
  const delimiter = `--${marker}`;
  let at = body.indexOf(delimiter);
  if (at === -1) throw new GatewayError('invalid_request', 'multipart body does not contain its boundary');
  let model: string | null = null;
  while (at !== -1) {
    const headersEnd = body.indexOf('\r\n\r\n', at);
    if (headersEnd === -1) break;
    const headers = body.subarray(at, headersEnd).toString('latin1');
    const next = body.indexOf(`\r\n${delimiter}`, headersEnd);
    // The header's name is case-insensitive; the field's name is not. Parsers differ on which of
    // two Content-Disposition headers wins, so a part with two is refused.
    const dispositions = [...headers.matchAll(/^content-disposition:([^\r\n]*)/gim)];
    if (dispositions.length > 1) throw new GatewayError('invalid_request', 'a multipart part has more than one Content-Disposition');
    const disposition = dispositions[0]?.[1] ?? '';
    if (/;\s*name="model"\s*(?:;|$)/.test(disposition)) {
      if (model !== null) throw new GatewayError('invalid_request', 'multipart body names the model field more than once', { param: 'model' });
      if (next === -1) throw new GatewayError('invalid_request', 'multipart model field is not terminated', { param: 'model' });
      model = checkedModel(body.subarray(headersEnd + 4, next).toString('utf8'));
    }
    at = next === -1 ? -1 : next + 2;
  }
  return model;
}
