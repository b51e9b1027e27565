/** Freezes a validated configuration all the way down, so nothing downstream can change what was checked. */
export function deepFreeze<T>(value: T): T {
  // A URL keeps its state in internal slots that freezing cannot reach; it is treated as a value.
  if (typeof value !== 'object' || value === null || Object.isFrozen(value) || value instanceof URL) return value;
  Object.freeze(value);
  const inner = value instanceof Map ? [...value.values()] : Object.values(value);
  for (const item of inner) deepFreeze(item);
  return value;
}
