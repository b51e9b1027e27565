import path from 'node:path';
import cron from 'node-cron';
import type { YamlSource } from './yaml-source.js';
import { readBoolean, readEnum, readInteger, readMap, readOptionalMap, readString, readStringList, type Plain } from './validate.js';
import {
  SETTINGS,
  ROOT_KEYS,
  allowsScheme,
  keyPathOf,
  sectionKeys,
  splitKey,
  type EnumValue,
  type KeyOfKind,
  type KeyWithDefault,
  type NoDefault,
  type Required,
  type SettingKey,
} from './settings.js';

/**
 * Readers that take a setting's key path, bounds, allowed values and default
 * from the table in settings.ts. Each reads one key of a section that was read
 * with `readSection` (or `readItem` for list items such as providers); `index`
 * is the item's position for `providers[]` keys. Errors are the ones of validate.ts.
 */

/** The file's top-level mapping, with the sections the table knows. */
export function readRoot(src: YamlSource, value: unknown): Plain {
  return readMap(src, [], value, ROOT_KEYS);
}

/** An optional section (`server:`, `audit:`…): absent or null reads as empty, so every key takes its default. */
export function readSection(src: YamlSource, section: string, value: unknown): Plain {
  return readOptionalMap(src, [section], value, sectionKeys(section));
}

/** One item of a list section (`providers[]`), which must be a mapping. */
export function readItem(src: YamlSource, section: `${string}[]`, index: number, value: unknown): Plain {
  return readMap(src, [section.slice(0, -2), index], value, sectionKeys(section));
}

/** The value the file gives the setting, undefined when absent. */
function valueOf(map: Plain, key: SettingKey): unknown {
  return map[splitKey(key).name];
}

export function readIntegerSetting(src: YamlSource, map: Plain, key: KeyOfKind<'integer'>, index?: number): number {
  const { type, default: fallback } = SETTINGS[key];
  return readInteger(src, keyPathOf(key, index), valueOf(map, key), { min: type.min, max: type.max }, typeof fallback === 'number' ? fallback : undefined);
}

function isEnumValue<K extends KeyOfKind<'enum'>>(key: K, value: string): value is EnumValue<K> {
  const values: readonly string[] = SETTINGS[key].type.values;
  return values.includes(value);
}

export function readEnumSetting<K extends KeyOfKind<'enum'>>(src: YamlSource, map: Plain, key: K, index?: number): EnumValue<K> {
  const setting = SETTINGS[key];
  const choices: readonly string[] = setting.type.values;
  const fallback = typeof setting.default === 'string' ? setting.default : undefined;
  const value = readEnum(src, keyPathOf(key, index), valueOf(map, key), choices, fallback);
  // readEnum accepted it from these very choices; the check only carries the type.
  if (!isEnumValue(key, value)) throw new Error(`${key}: "${value}" is not one of its values`);
  return value;
}

export function readBooleanSetting(src: YamlSource, map: Plain, key: KeyOfKind<'boolean'>, index?: number): boolean {
  return readBoolean(src, keyPathOf(key, index), valueOf(map, key), SETTINGS[key].default);
}

export function readStringListSetting(src: YamlSource, map: Plain, key: KeyOfKind<'string-list'>, index?: number): readonly string[] {
  const fallback = SETTINGS[key].default;
  return readStringList(src, keyPathOf(key, index), valueOf(map, key), Array.isArray(fallback) ? fallback : undefined);
}

type TextKey = KeyOfKind<'string' | 'path' | 'cron' | 'env-name' | 'header-value' | 'gateway-id' | 'url'>;

/** A string setting that always has a value: its default, or it is required. */
export function readStringSetting(src: YamlSource, map: Plain, key: TextKey & KeyWithDefault<string | Required>, index?: number): string {
  const fallback = SETTINGS[key].default;
  return readString(src, keyPathOf(key, index), valueOf(map, key), typeof fallback === 'string' ? fallback : undefined);
}

/** A string setting without a default: null when the key is absent. */
export function readOptionalStringSetting(src: YamlSource, map: Plain, key: TextKey & KeyWithDefault<NoDefault>, index?: number): string | null {
  const value = valueOf(map, key);
  return value === undefined ? null : readString(src, keyPathOf(key, index), value);
}

/** A path setting, resolved against `cwd`. */
export function readPathSetting(src: YamlSource, map: Plain, key: KeyOfKind<'path'>, cwd: string): string {
  return path.resolve(cwd, readStringSetting(src, map, key));
}

/**
 * A URL setting's text (read by the caller: whether it is required can depend
 * on other keys), parsed, with a scheme the table allows; `mustBe` says which
 * in the error, such as "an http:// or https:// URL".
 */
export function parseUrlSetting(src: YamlSource, key: KeyOfKind<'url'>, text: string, mustBe: string, index?: number): URL {
  const at = keyPathOf(key, index);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    src.fail(at, `"${text}" is not a URL`);
  }
  if (!allowsScheme(SETTINGS[key].type, url.protocol)) src.fail(at, `must be ${mustBe}`);
  return url;
}

/** A node-cron expression. */
export function readCronSetting(src: YamlSource, map: Plain, key: KeyOfKind<'cron'>): string {
  const expression = readStringSetting(src, map, key);
  if (!cron.validate(expression)) src.fail(keyPathOf(key), `"${expression}" is not a valid cron expression`);
  return expression;
}
