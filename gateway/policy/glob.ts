/** A compiled `*` glob: exact strings and the match-all `*` skip the regular expression. */
export type StringTest = (value: string) => boolean;

export function compileGlob(pattern: string): StringTest {
  if (pattern === '*') return () => true;
  if (!pattern.includes('*')) return (value) => value === pattern;
  const source = pattern.split('*').map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*');
  const re = new RegExp(`^${source}$`, 's');
  return (value) => re.test(value);
}

export function compileGlobList(patterns: readonly string[]): StringTest {
  const tests = patterns.map(compileGlob);
  if (tests.length === 1) return tests[0]!;
  return (value) => tests.some((test) => test(value));
}
