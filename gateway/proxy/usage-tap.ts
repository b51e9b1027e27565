/** Token usage as the provider reported it. */
export interface TokenUsage {
  readonly prompt_tokens: number | null;
  readonly completion_tokens: number | null;
  readonly total_tokens: number | null;
}

/**
 * Providers put `usage` at the end of a JSON body and in the last chunk of a
 * stream, so only a bounded tail of the response is kept, in memory, and read
 * once the response is over. Only the token counts leave this object.
 */
const TAIL_BYTES = 16 * 1024;

export class UsageTap {
  /** The newest chunks, as they came: enough of them to hold TAIL_BYTES. Copied once, when the usage is read, not on every chunk. */
  private chunks: Buffer[] = [];
  private bytes = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    // Drops the oldest chunks that the newer ones no longer need to reach TAIL_BYTES.
    while (this.chunks.length > 1 && this.bytes - this.chunks[0]!.length >= TAIL_BYTES) this.bytes -= this.chunks.shift()!.length;
  }

  usage(): TokenUsage | null {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.bytes);
    return extractUsage(all.subarray(Math.max(0, all.length - TAIL_BYTES)).toString('utf8'));
  }
}

/** The last `"usage": {…}` object in the text, reduced to its token counts. */
export function extractUsage(text: string): TokenUsage | null {
  const re = /"usage"\s*:\s*\{/g;
  let start = -1;
  for (let m = re.exec(text); m; m = re.exec(text)) start = m.index + m[0].length - 1;
  if (start === -1) return null;
  const end = matchingBrace(text, start);
  if (end === -1) return null;
  let usage: Record<string, unknown>;
  try {
    usage = JSON.parse(text.slice(start, end + 1)) as Record<string, unknown>;
  } catch {
    return null;
  }
  const prompt = count(usage.prompt_tokens) ?? count(usage.input_tokens);
  const completion = count(usage.completion_tokens) ?? count(usage.output_tokens);
  const total = count(usage.total_tokens) ?? (prompt !== null && completion !== null ? prompt + completion : prompt);
  if (prompt === null && completion === null && total === null) return null;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: total };
}

function count(value: unknown): number | null {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 ? value : null;
}

function matchingBrace(text: string, open: number): number {
  let depth = 0;
  let inString = false;
  for (let i = open; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b) depth++;
    else if (c === 0x7d && --depth === 0) return i;
  }
  return -1;
}
