/** UTC in SQLite's own `YYYY-MM-DD HH:MM:SS.SSS`, so `datetime('now', …)` comparisons work on the text. */
export function sqliteTime(date: Date = new Date()): string {
  const iso = date.toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
}
