import type { KeyPath, YamlSource } from './yaml-source.js';

/**
 * Typed readers over a parsed YAML value. Each one either returns the value in
 * the expected shape or throws a ConfigError that names file, line, column and key.
 */
export type Plain = Record<string, unknown>;

/** A YAML mapping read as plain data; `!!omap`, `!!set` and other tagged collections are not mappings here. */
export function isPlainObject(value: unknown): value is Plain {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

export function readMap(src: YamlSource, path: KeyPath, value: unknown, allowedKeys: readonly string[] | null): Plain {
  if (value === undefined) src.fail(path, 'is required (a mapping)');
  if (!isPlainObject(value)) src.fail(path, `must be a mapping, got ${describe(value)}`);
  if (allowedKeys) {
    for (const key of Object.keys(value)) {
      if (!allowedKeys.includes(key)) src.fail([...path, key], `unknown key (expected one of: ${allowedKeys.join(', ')})`);
    }
  }
  return value;
}

export function readOptionalMap(src: YamlSource, path: KeyPath, value: unknown, allowedKeys: readonly string[]): Plain {
  return value === undefined || value === null ? {} : readMap(src, path, value, allowedKeys);
}

export function readString(src: YamlSource, path: KeyPath, value: unknown, fallback?: string): string {
  if (value === undefined && fallback !== undefined) return fallback;
  if (value === undefined) src.fail(path, 'is required');
  if (typeof value !== 'string' || value === '') src.fail(path, `must be a non-empty string, got ${describe(value)}`);
  return value;
}

export function readInteger(
  src: YamlSource,
  path: KeyPath,
  value: unknown,
  range: { min: number; max: number },
  fallback?: number,
): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (value === undefined) src.fail(path, 'is required');
  if (typeof value !== 'number' || !Number.isInteger(value) || value < range.min || value > range.max) {
    src.fail(path, `must be an integer from ${range.min} to ${range.max}, got ${describe(value)}`);
  }
  return value;
}

export function readNumber(src: YamlSource, path: KeyPath, value: unknown, range: { min: number; max: number }, fallback?: number): number {
  if (value === undefined && fallback !== undefined) return fallback;
  if (value === undefined) src.fail(path, 'is required');
  if (typeof value !== 'number' || !Number.isFinite(value) || value < range.min || value > range.max) {
    src.fail(path, `must be a number from ${range.min} to ${range.max}, got ${describe(value)}`);
  }
  return value;
}

export function readBoolean(src: YamlSource, path: KeyPath, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') src.fail(path, `must be true or false, got ${describe(value)}`);
  return value;
}

export function readEnum<T extends string>(src: YamlSource, path: KeyPath, value: unknown, choices: readonly T[], fallback?: T): T {
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) {
    src.fail(path, `must be one of ${choices.join(' | ')}, got ${describe(value)}`);
  }
  return value as T;
}

export function readStringList(src: YamlSource, path: KeyPath, value: unknown, fallback?: readonly string[]): readonly string[] {
  if (value === undefined && fallback !== undefined) return fallback;
  if (!Array.isArray(value) || value.length === 0) src.fail(path, `must be a non-empty list of strings, got ${describe(value)}`);
  return value.map((item, i) => readString(src, [...path, i], item));
}

export function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `"${value.length > 40 ? `${value.slice(0, 40)}…` : value}"`;
  return String(value);
}
