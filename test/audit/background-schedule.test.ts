import { setTimeout as sleep } from 'node:timers/promises';
import test from 'ava';
import { scheduleJob } from '../../gateway/audit/background-schedule.js';

test('a run that outlasts its every-second schedule is never overlapped, and the skipped ticks log nothing', async (t) => {
  const warned: string[] = [];
  const warn = console.warn;
  console.warn = (...args: unknown[]) => void warned.push(args.map(String).join(' '));
  let running = 0;
  let most = 0;
  let runs = 0;
  const done: number[] = [];
  const job = scheduleJob(
    '* * * * * *',
    'background-schedule-test',
    async (signal) => {
      runs++;
      running++;
      most = Math.max(most, running);
      try {
        // Three seconds unless stopped: two or three ticks come while it runs.
        await sleep(3000, undefined, { signal }).catch(() => undefined);
      } finally {
        running--;
      }
      return runs;
    },
    { onDone: (n) => done.push(n), onError: (err) => t.fail(String(err)) },
  );
  try {
    await sleep(5500);
  } finally {
    await job.stop();
    console.warn = warn;
  }
  t.is(most, 1, 'one run at a time');
  t.true(runs >= 1 && runs <= 2, `${runs} runs in 5.5 s of a 3 s job`);
  t.true(done.length >= 1);
  t.deepEqual(warned.filter((w) => /node-cron|still running/i.test(w)), []);
});
