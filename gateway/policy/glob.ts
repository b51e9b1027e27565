/** A compiled `*` glob: exact strings, the match-all `*` and a single final `*` skip the regular expression. */
export type StringTest = (value: string) => boolean;

export function compileGlob(pattern: string): StringTest {
  if (pattern === '*') return () => true;
  const star = pattern.indexOf('*');
  if (star < 0) return (value) => value === pattern;
  // One star at the end (`gpt-4o*`), the usual allow-list entry, is a prefix test.
  if (star === pattern.length - 1) {
    const prefix = pattern.slice(0, star);
    return (value) => value.startsWith(prefix);
  }
  const source = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  const re = new RegExp(`^${source}$`, 's');
  return (value) => re.test(value);
}

export function compileGlobList(patterns: readonly string[]): StringTest {
  const tests = patterns.map(compileGlob);
  if (tests.length === 1) return tests[0]!;
  return (value) => tests.some((test) => test(value));
}
