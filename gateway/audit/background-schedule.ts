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
 * Runs `job` on a node-cron schedule, evaluated in UTC, one run at a time
 * (a tick that finds a run still going is skipped); never keeps the process
 * alive. `stop()` aborts the run in progress through its signal, and an
 * aborted run reports no error.
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
  // A tick that comes while the previous run is still going is skipped here,
  // silently: node-cron's own `noOverlap` skips it too but logs a warning
  // each time, which a long prune on a short schedule turns into noise.
  const task = cron.schedule(
    schedule,
    async () => {
      if (running) return;
      running = run();
      await running;
      running = null;
    },
    { timezone: 'UTC', name },
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
