import type { ControlEventKind } from '../audit/control-log.js';

/** Enough of a SHA-256 to tell policy versions apart at a glance. */
const HASH_PREFIX = 12;

type Detail = Readonly<Record<string, unknown>>;

/**
 * One line about a control event for the dashboard's Changes panel. Each kind
 * names the fields it shows, so a field added to an event later (or a
 * rejected edit's error message, which may quote the policy file) is never
 * shown until someone decides it is safe to.
 */
export function changeSummary(kind: string, detailJson: string): string {
  // Kinds come from the database, so a name like "constructor" must not reach the prototype.
  return Object.hasOwn(SUMMARIES, kind) ? SUMMARIES[kind as ControlEventKind](parseDetail(detailJson)) : '';
}

/** Typed by kind, so a kind added to the control log does not compile until it has a summary here. */
const SUMMARIES: Readonly<Record<ControlEventKind, (d: Detail) => string>> = {
  'key.created': keySummary,
  'key.revoked': keySummary,
  'policy.loaded': (d) => join(`policy ${text(d.policy_hash).slice(0, HASH_PREFIX)}`, count(d.rules, 'rules'), text(d.mode)),
  'policy.rejected': (d) => join(`edit rejected at line ${text(d.line)}, col ${text(d.col)}`, text(d.key)),
  'gateway.started': (d) => join(`version ${text(d.version)}`, `pid ${text(d.pid)}`),
  'gateway.stopped': (d) => `pid ${text(d.pid)}`,
  'retention.ran': (d) => `${text(d.decisions)} decisions and ${text(d.outcomes)} outcomes removed`,
  'backup.made': (d) => text(d.file),
  'admin.login': (d) => text(d.address),
  'admin.login_failed': (d) => text(d.address),
};

function keySummary(d: Detail): string {
  return join(`key ${text(d.key_id)}`, d.customer_id === undefined ? '' : `customer ${text(d.customer_id)}`);
}

/** A detail that is not a JSON object shows as nothing rather than breaking the panel. */
function parseDetail(json: string): Detail {
  try {
    const value: unknown = JSON.parse(json);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Detail) : {};
  } catch {
    return {};
  }
}

/** Strings and numbers only: an object or array in a field is not summarised. */
function text(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : '';
}

function count(value: unknown, noun: string): string {
  return typeof value === 'number' ? `${value} ${noun}` : '';
}

function join(...parts: string[]): string {
  return parts.filter((p) => p !== '').join(', ');
}
