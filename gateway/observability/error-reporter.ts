import * as Sentry from '@sentry/node';
import type { ErrorEvent } from '@sentry/node';
import type { AuthFailure } from '../auth/authenticate.js';
import { NO_REPORTER } from './no-reporter.js';

/**
 * Where the gateway reports failures. With no DSN it is a no-op, so the rest
 * of the code reports unconditionally.
 */
export interface ErrorReporter {
  readonly enabled: boolean;
  exception(err: unknown, tags?: Record<string, string>): void;
  /** A 5xx the gateway answered; only the code and ids go out. */
  serverError(code: string, status: number, requestId: string): void;
  /** A 5xx the provider answered and the gateway passed on. */
  upstreamError(provider: string, status: number, requestId: string): void;
  authFailure(failure: AuthFailure): void;
  message(text: string, tags?: Record<string, string>): void;
  flush(timeoutMs: number): Promise<void>;
}

/** Failed authentication, provider errors and the gateway's own 5xx answers are reported once per kind per window, so a scan or an outage cannot flood the project. */
const REPORT_WINDOW_MS = 60_000;

export function createErrorReporter(dsn: string | undefined, release: string): ErrorReporter {
  if (!dsn) return NO_REPORTER;
  initSentry(dsn, release);
  return sentryReporter(oncePerWindow());
}

function initSentry(dsn: string, release: string): void {
  Sentry.init({
    dsn,
    release,
    tracesSampleRate: 0,
    sendDefaultPii: false,
    includeLocalVariables: false,
    skipOpenTelemetrySetup: true,
    // Only integrations that cannot pick up request data: no HTTP/fetch breadcrumbs, no console capture, no local variables.
    defaultIntegrations: false,
    integrations: [
      Sentry.onUncaughtExceptionIntegration(),
      // 'none': the serve command's own handler logs the crash (without its message) and exits.
      Sentry.onUnhandledRejectionIntegration({ mode: 'none' }),
      Sentry.linkedErrorsIntegration(),
      Sentry.dedupeIntegration(),
      Sentry.functionToStringIntegration(),
      Sentry.nodeContextIntegration(),
    ],
    beforeSend: scrub,
    beforeBreadcrumb: () => null,
  });
}

/** Whether a report of this kind may go out now; saying yes starts the kind's next window. */
function oncePerWindow(): (kind: string) => boolean {
  const lastReport = new Map<string, number>();
  return (kind) => {
    const now = Date.now();
    if (now - (lastReport.get(kind) ?? 0) < REPORT_WINDOW_MS) return false;
    lastReport.set(kind, now);
    return true;
  };
}

/** The reporter over an initialised Sentry client; `due` throttles all but exceptions. */
function sentryReporter(due: (kind: string) => boolean): ErrorReporter {
  return {
    enabled: true,
    exception(err, tags) {
      Sentry.captureException(err, { tags });
    },
    serverError(code, status, requestId) {
      if (!due(`server:${code}`)) return;
      Sentry.captureMessage(`govgate answered ${status} ${code}`, {
        level: 'error',
        tags: { code, status: String(status), request_id: requestId },
        fingerprint: ['server-error', code],
      });
    },
    upstreamError(provider, status, requestId) {
      if (!due(`upstream:${provider}:${status}`)) return;
      Sentry.captureMessage(`provider ${provider} answered ${status}`, {
        level: 'error',
        tags: { code: 'upstream_status', provider, status: String(status), request_id: requestId },
        fingerprint: ['upstream-status', provider, String(status)],
      });
    },
    authFailure(failure) {
      if (!due(`auth:${failure}`)) return;
      Sentry.captureMessage(`authentication failed: ${failure} API key`, {
        level: 'warning',
        tags: { code: 'invalid_api_key', failure },
        fingerprint: ['auth-failure', failure],
      });
    },
    message(text, tags) {
      if (!due(`message:${text}`)) return;
      Sentry.captureMessage(text, { level: 'error', tags });
    },
    async flush(timeoutMs) {
      await Sentry.flush(timeoutMs);
    },
  };
}

/**
 * Defence in depth: whatever an event picked up, request data, user data and
 * exception messages (a foreign error's message may quote its input) never
 * leave; the exception's type and stack frames do.
 */
function scrub(event: ErrorEvent): ErrorEvent {
  delete event.request;
  delete event.user;
  delete event.breadcrumbs;
  for (const exception of event.exception?.values ?? []) {
    exception.value = exception.type ?? 'Error';
  }
  return event;
}

