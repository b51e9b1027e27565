import { existsSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';

/** A path into a YAML document: map keys and sequence indexes. */
export type KeyPath = readonly (string | number)[];

/**
 * A configuration or policy mistake, located in its file. The message is the one
 * line users see: `FILE:LINE:COL: key: what is wrong`.
 */
export class ConfigError extends Error {
  readonly code = 'config_invalid';
  constructor(
    readonly file: string,
    readonly line: number,
    readonly col: number,
    readonly key: string,
    readonly detail: string,
  ) {
    super(`${file}:${line}:${col}: ${key ? `${key}: ` : ''}${detail}`);
    this.name = 'ConfigError';
  }
}

export function formatKeyPath(path: KeyPath): string {
  let out = '';
  for (const part of path) {
    out += typeof part === 'number' ? `[${part}]` : out === '' ? part : `.${part}`;
  }
  return out;
}

/**
 * A parsed YAML file that remembers where every value came from, so validation
 * can work on plain values and still point at the line and column of a mistake.
 */
export class YamlSource {
  private constructor(
    readonly file: string,
    readonly text: string,
    private readonly doc: Document.Parsed,
    private readonly lines: LineCounter,
  ) {}

  static readFile(file: string, displayName = file): YamlSource {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      // The directory, absolute, because a relative name hides which working directory was searched.
      const dir = dirname(resolve(file));
      const reason = code === 'ENOENT' ? `file not found (looked in ${dir}${existsSync(dir) ? '' : ', which does not exist'})` : `cannot read file (${code ?? 'error'})`;
      throw new ConfigError(displayName, 1, 1, '', reason);
    }
    return YamlSource.parse(displayName, text);
  }

  static parse(file: string, text: string): YamlSource {
    const lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
    const first = doc.errors[0];
    if (first) {
      const pos = lines.linePos(first.pos[0]);
      throw new ConfigError(file, pos.line, pos.col, '', `invalid YAML: ${first.message.split('\n')[0]}`);
    }
    return new YamlSource(file, text, doc, lines);
  }

  /** The document as plain JavaScript values. */
  value(): unknown {
    try {
      return this.doc.toJS({ maxAliasCount: 100 });
    } catch {
      // The yaml library refuses alias bombs (a billion laughs) with a plain error; it is still a mistake in the file.
      throw new ConfigError(this.file, 1, 1, '', 'too many YAML aliases (at most 100 are expanded)');
    }
  }

  /** Throws a ConfigError located at the deepest existing node on `path`. */
  fail(path: KeyPath, detail: string): never {
    const { line, col } = this.locate(path);
    throw new ConfigError(this.file, line, col, formatKeyPath(path), detail);
  }

  private locate(path: KeyPath): { line: number; col: number } {
    for (let depth = path.length; depth >= 0; depth--) {
      const node = depth === 0 ? this.doc.contents : this.doc.getIn(path.slice(0, depth), true);
      const range = (node as { range?: [number, number, number] } | undefined)?.range;
      if (range) return this.lines.linePos(range[0]);
    }
    return { line: 1, col: 1 };
  }
}
