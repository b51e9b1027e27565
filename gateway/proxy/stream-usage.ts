/**
 * The outcome row records the tokens of every stream, and token limits settle
 * on them, but providers send a stream's usage only when the request asks for
 * it (`stream_options.include_usage`). When the client did not ask, the
 * gateway asks on its behalf and takes out of the stream what the client
 * would not have received: the final usage event (empty `choices`) and the
 * `"usage":null` every other event then carries.
 */

const INCLUDE_USAGE = Buffer.from('"stream_options":{"include_usage":true},');

/**
 * The body to send upstream with usage requested, or null when the client
 * asked for usage itself. `json` is the body already parsed (strictly, so it
 * has no duplicate keys to disagree about).
 */
export function withUsageRequested(body: Buffer, json: Readonly<Record<string, unknown>>): Buffer | null {
  const options = json.stream_options;
  if (isObject(options) && options.include_usage === true) return null;
  if (options === undefined) {
    // Inserted after the opening brace, so every other byte of the client's body goes on unchanged
    // (re-serialising would round large integers such as a `seed`).
    const open = body.indexOf(0x7b);
    if (open !== -1 && Object.keys(json).length > 0) return Buffer.concat([body.subarray(0, open + 1), INCLUDE_USAGE, body.subarray(open + 1)]);
  }
  return Buffer.from(JSON.stringify({ ...json, stream_options: { ...(isObject(options) ? options : {}), include_usage: true } }));
}

/**
 * Removes the usage the client did not ask for from a server-sent event
 * stream, event by event. A partial event waits for the rest of it; every
 * other byte passes through unchanged.
 */
export class UsageEventFilter {
  private pending: Buffer = Buffer.alloc(0);

  push(chunk: Buffer): Buffer {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: Buffer[] = [];
    for (;;) {
      const end = eventEnd(this.pending);
      if (end === -1) break;
      const event = this.pending.subarray(0, end);
      this.pending = this.pending.subarray(end);
      const kept = withoutUsage(event);
      if (kept) out.push(kept);
    }
    return out.length === 1 ? out[0]! : Buffer.concat(out);
  }

  /** Whatever is left when the stream ends (an unterminated last event), as it came. */
  end(): Buffer {
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    return rest;
  }
}

/** The end of the first complete event (after its blank line), or -1. */
function eventEnd(buf: Buffer): number {
  const lf = buf.indexOf('\n\n');
  const crlf = buf.indexOf('\r\n\r\n');
  if (lf === -1) return crlf === -1 ? -1 : crlf + 4;
  if (crlf === -1 || lf < crlf) return lf + 2;
  return crlf + 4;
}

/** One line of an event (split on LF only): JSON may hold U+2028 and U+2029 raw, which `m`-flag patterns take for line ends. */
const DATA_LINE = /^data: ?(\{.*\})\r?$/s;

function withoutUsage(event: Buffer): Buffer | null {
  const text = event.toString('utf8');
  let data: RegExpExecArray | null = null;
  for (const line of text.split('\n')) if ((data = DATA_LINE.exec(line))) break;
  if (!data) return event;
  let parsed: unknown;
  try {
    parsed = JSON.parse(data[1]!);
  } catch {
    return event;
  }
  if (!isObject(parsed) || !('usage' in parsed)) return event;
  if (isObject(parsed.usage) && Array.isArray(parsed.choices) && parsed.choices.length === 0) return null;
  if (parsed.usage !== null) return event;
  const json = data[1]!;
  const stripped = json.includes(',"usage":null') ? json.replace(',"usage":null', '') : json.replace('"usage":null,', '');
  try {
    const check: unknown = JSON.parse(stripped);
    if (!isObject(check) || 'usage' in check) return event;
  } catch {
    return event;
  }
  return Buffer.from(text.replace(json, () => stripped));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
