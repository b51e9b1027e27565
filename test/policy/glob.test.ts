import assert from 'node:assert/strict';
import test from 'ava';
import fc from 'fast-check';
import { compileGlob, compileGlobList } from '../../gateway/policy/glob.js';

const SEED = 4_242;

function matches(pattern: string, values: readonly string[]): string[] {
  const match = compileGlob(pattern);
  return values.filter((v) => match(v));
}

test('"*" alone matches everything, the empty string and line breaks included', (t) => {
  const any = compileGlob('*');
  for (const v of ['', 'gpt-4o', '*', '\n', 'a\nb', '\u2028']) t.true(any(v), JSON.stringify(v));
  t.true(compileGlob('**')('anything at all'));
});

test('without "*" a pattern is an exact, case-sensitive string', (t) => {
  t.deepEqual(matches('gpt-4o', ['gpt-4o', 'GPT-4o', 'gpt-4o-mini', ' gpt-4o', 'gpt-4', '']), ['gpt-4o']);
  t.deepEqual(matches('', ['', 'x']), ['']);
});

test('"*" at the start, the end, in the middle, and several times', (t) => {
  const values = ['gpt-4o', 'gpt-4o-mini', 'gpt-4.1-mini', 'o3-mini', 'mini', 'gpt-', '-mini', 'text-embedding-3-small'];
  t.deepEqual(matches('gpt-*', values), ['gpt-4o', 'gpt-4o-mini', 'gpt-4.1-mini', 'gpt-']);
  t.deepEqual(matches('*-mini', values), ['gpt-4o-mini', 'gpt-4.1-mini', 'o3-mini', '-mini']);
  t.deepEqual(matches('gpt-*-mini', values), ['gpt-4o-mini', 'gpt-4.1-mini']);
  t.deepEqual(matches('*mini*', values), ['gpt-4o-mini', 'gpt-4.1-mini', 'o3-mini', 'mini', '-mini']);
  t.deepEqual(matches('*-*-*', values), ['gpt-4o-mini', 'gpt-4.1-mini', 'text-embedding-3-small']);
  t.deepEqual(matches('g*4*o', values), ['gpt-4o']);
});

test('"*" matches across line breaks and matches nothing as well as something', (t) => {
  t.true(compileGlob('a*b')('a\nb'));
  t.true(compileGlob('a*b')('ab'));
  t.true(compileGlob('a**b')('ab'));
  t.false(compileGlob('a*b')('a\nb\n'), 'anchored at both ends, even before a final line break');
  t.false(compileGlob('a*')('\na'));
});

test('regular-expression metacharacters are literal', (t) => {
  t.deepEqual(matches('gpt-4.1*', ['gpt-4.1', 'gpt-4.1-mini', 'gpt-401', 'gpt-4x1-mini']), ['gpt-4.1', 'gpt-4.1-mini']);
  t.deepEqual(matches('gpt-?*', ['gpt-?', 'gpt-?x', 'gpt-4', 'gpt-']), ['gpt-?', 'gpt-?x']);
  t.deepEqual(matches('a+*', ['a+', 'aa', 'a+b']), ['a+', 'a+b']);
  t.deepEqual(matches('(o1|o3)*', ['(o1|o3)-mini', 'o1-mini', 'o3']), ['(o1|o3)-mini']);
  t.deepEqual(matches('[gpt]*', ['[gpt]-4', 'g', 'gpt']), ['[gpt]-4']);
  t.deepEqual(matches('^x$*', ['^x$', '^x$y', 'x']), ['^x$', '^x$y']);
  t.deepEqual(matches('a{2}*', ['a{2}', 'aa']), ['a{2}']);
  t.deepEqual(matches('back\\slash*', ['back\\slash', 'backslash', 'back\\\\slash']), ['back\\slash']);
  t.deepEqual(matches('*\\', ['x\\', '\\', 'x']), ['x\\', '\\']);
  t.deepEqual(matches('/x/*', ['/x/y', 'x']), ['/x/y']);
});

test('matching is case-sensitive with or without "*"', (t) => {
  t.deepEqual(matches('GPT-*', ['gpt-4o', 'GPT-4o', 'Gpt-4o']), ['GPT-4o']);
  t.deepEqual(matches('*-Mini', ['gpt-4o-mini', 'gpt-4o-Mini']), ['gpt-4o-Mini']);
  t.false(compileGlob('straße*')('STRASSE'));
});

test('compileGlobList: any of the patterns; an empty list matches nothing', (t) => {
  const none = compileGlobList([]);
  t.false(none(''));
  t.false(none('gpt-4o'));
  const list = compileGlobList(['gpt-4o', 'o3-*', '*-embedding-*']);
  t.deepEqual(['gpt-4o', 'gpt-4o-mini', 'o3-mini', 'text-embedding-3-small', 'O3-mini'].filter((v) => list(v)), ['gpt-4o', 'o3-mini', 'text-embedding-3-small']);
  t.true(compileGlobList(['x', '*'])('anything'));
  t.true(compileGlobList(['only'])('only'));
});

/** What a glob means, written the slow way: "*" is any run of characters, everything else is itself. */
function reference(pattern: string, value: string): boolean {
  const parts = pattern.split('*');
  if (parts.length === 1) return pattern === value;
  const first = parts[0]!;
  const last = parts.at(-1)!;
  if (!value.startsWith(first) || value.length < first.length + last.length || !value.endsWith(last)) return false;
  let at = first.length;
  const end = value.length - last.length;
  for (const middle of parts.slice(1, -1)) {
    const found = value.indexOf(middle, at);
    if (found === -1 || found + middle.length > end) return false;
    at = found + middle.length;
  }
  return true;
}

const alphabet = fc.constantFrom('a', 'b', 'A', '*', '.', '?', '+', '(', ')', '[', ']', '{', '}', '^', '$', '|', '\\', '/', '-', '\n');

test('property: a compiled glob agrees with the reference meaning on generated patterns and values', (t) => {
  const pattern = fc.string({ unit: alphabet, maxLength: 8 });
  const value = fc.string({ unit: alphabet.filter((c) => c !== '*'), maxLength: 10 });
  fc.assert(
    fc.property(pattern, value, (p, v) => {
      assert.equal(compileGlob(p)(v), reference(p, v), `${JSON.stringify(p)} against ${JSON.stringify(v)}`);
    }),
    { seed: SEED, numRuns: 5000 },
  );
  t.pass();
});

test('property: a pattern matches itself with each "*" replaced by any text', (t) => {
  const pieces = fc.array(fc.string({ maxLength: 6 }).map((s) => s.replaceAll('*', '')), { minLength: 1, maxLength: 5 });
  fc.assert(
    fc.property(pieces, fc.array(fc.string({ maxLength: 6 }), { minLength: 4, maxLength: 4 }), (parts, fills) => {
      const pattern = parts.join('*');
      const value = parts.map((part, i) => (i === 0 ? part : `${fills[(i - 1) % fills.length]!}${part}`)).join('');
      assert.ok(compileGlob(pattern)(value), `${JSON.stringify(pattern)} against ${JSON.stringify(value)}`);
    }),
    { seed: SEED + 1, numRuns: 2000 },
  );
  t.pass();
});
