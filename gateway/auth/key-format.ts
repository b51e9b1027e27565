import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * Gateway keys look like `gg_<32 random base62><6 base62 CRC32>`: about 190
 * bits of randomness, a prefix secret scanners can recognise, and a checksum
 * that rejects a mistyped key without touching the database.
 */
export const KEY_PREFIX = 'gg_';
const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';
const RANDOM_LENGTH = 32;
const CHECKSUM_LENGTH = 6;
export const KEY_LENGTH = KEY_PREFIX.length + RANDOM_LENGTH + CHECKSUM_LENGTH;
const DISPLAY_LENGTH = KEY_PREFIX.length + 8;
const SHAPE = new RegExp(`^${KEY_PREFIX}[0-9A-Za-z]{${RANDOM_LENGTH + CHECKSUM_LENGTH}}$`);

export function generateKey(): string {
  let random = '';
  // Rejection sampling keeps every character uniform: 248 = 4 * 62.
  while (random.length < RANDOM_LENGTH) {
    for (const byte of randomBytes(RANDOM_LENGTH * 2)) {
      if (byte < 248 && random.length < RANDOM_LENGTH) random += ALPHABET[byte % 62];
    }
  }
  const body = KEY_PREFIX + random;
  return body + checksum(body);
}

/** True when the string has the shape and checksum of a gateway key. */
export function isWellFormedKey(key: string): boolean {
  return key.length === KEY_LENGTH && SHAPE.test(key) && checksum(key.slice(0, -CHECKSUM_LENGTH)) === key.slice(-CHECKSUM_LENGTH);
}

export function keyDigest(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** The part of a key that is safe to show in listings and logs. */
export function displayPrefix(key: string): string {
  return key.slice(0, DISPLAY_LENGTH);
}

export function newKeyId(): string {
  return `key_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
}

function checksum(text: string): string {
  let n = crc32(text);
  let out = '';
  for (let i = 0; i < CHECKSUM_LENGTH; i++) {
    out = ALPHABET[n % 62] + out;
    n = Math.floor(n / 62);
  }
  return out;
}
