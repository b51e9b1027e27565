import test from 'ava';
import { CHECKPOINT_LOG_INTERVAL_MS, throttleByCode } from '../../gateway/app.js';

test('one line per code per minute, the next one counting the repeats it stood for', (t) => {
  let now = 0;
  const lines: Array<[string, number]> = [];
  const onError = throttleByCode(CHECKPOINT_LOG_INTERVAL_MS, (code, suppressed) => lines.push([code, suppressed]), () => now);
  // Ten failures a second for a minute and a half, as in the report, and one other code among them.
  for (let i = 0; i < 900; i++) {
    onError('SQLITE_READONLY');
    if (i === 5) onError('SQLITE_IOERR');
    now += 100;
  }
  t.deepEqual(lines, [
    ['SQLITE_READONLY', 0],
    ['SQLITE_IOERR', 0],
    ['SQLITE_READONLY', 599],
  ]);
  t.is(CHECKPOINT_LOG_INTERVAL_MS, 60_000);
});
