import type { ErrorReporter } from './error-reporter.js';

/**
 * The reporter when no DSN is set. It lives apart from error-reporter.ts so
 * that a gateway without Sentry never loads the SDK, which costs over a
 * second of start-up.
 */
export const NO_REPORTER: ErrorReporter = Object.freeze({
  enabled: false,
  exception() {},
  serverError() {},
  upstreamError() {},
  authFailure() {},
  message() {},
  async flush() {},
});
