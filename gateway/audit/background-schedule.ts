import cron from 'node-cron';

export interface ScheduleHooks<T> {
  onDone(result: T): void;
  onError(err: unknown): void;
}

export interface ScheduledJob {
  /** Stops the schedule and aborts a run in progress. */
  stop(): Promise<void>;
}

/**
 * Runs `job` on a node-cron schedule, evaluated in UTC, one run at a time;
 * never keeps the process alive. `stop()` aborts the run in progress through
 * its signal, and an aborted run reports no error.
 */
export function scheduleJob<T>(schedule: string, name: string, job: (signal: AbortSignal) => Promise<T>, hooks: ScheduleHooks<T>): ScheduledJob {
  const stopping = new AbortController();
  let running: Promise<void> | null = null;
  const run = async () => {
    try {
      hooks.onDone(await job(stopping.signal));
    } catch (err) {
      if (!stopping.signal.aborted) hooks.onError(err);
    }
  };
  const task = cron.schedule(
    schedule,
    async () => {
      running = run();
      await running;
      running = null;
    },
    { timezone: 'UTC', name, noOverlap: true },
  );
  task.unref();
  return {
    async stop() {
      await task.destroy();
      stopping.abort();
      await running;
    },
  };
}
