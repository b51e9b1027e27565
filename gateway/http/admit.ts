import type { IncomingMessage } from 'node:http';
import type { DecisionKind } from '../audit/decision-row.js';
import { authenticate } from '../auth/authenticate.js';
import type { ApiKeyRecord } from '../auth/key-store.js';
import { METADATA_HEADER, NO_METADATA, parseGovernanceMetadata, type Metadata } from '../facts/governance-metadata.js';
import { checkRequestHead, isMultipart, readRequest, type RequestReading } from '../facts/read-request.js';
import type { Operation } from '../facts/routes.js';
import type { RequestFacts } from '../policy/request-facts.js';
import type { Lease } from '../proxy/lease.js';
import type { GatewayContext } from './context.js';
import { govern, NO_REQUEST_FACTS, type Governed, type GovernInput } from './govern.js';
import { readBody } from './read-body.js';
import { refuse, refuseUnauthenticated, type Arrival } from './refuse.js';

const EMPTY = Buffer.alloc(0);

/** What a request is, once read: the question the policy is asked. */
export interface Question {
  readonly operation: string;
  readonly model: string | null;
  readonly metadata: Metadata;
  readonly request: RequestFacts['request'];
  readonly reading: RequestReading | null;
  readonly mintsCredential: boolean;
}

/** Reads a request into its question; throws a GatewayError (or ClientGoneError) for one it cannot read. */
export type QuestionReader = (req: IncomingMessage, known: { metadata: Metadata; bodyBytes: number }) => Promise<Question>;

export interface Entry extends Arrival {
  readonly kind: DecisionKind;
  readonly req: IncomingMessage;
  /** The operation the route names; a check learns its operation from its body. */
  readonly operation: string;
  readonly read: QuestionReader;
}

export interface Judged {
  readonly key: ApiKeyRecord;
  readonly question: Question;
  readonly governed: Governed;
}

export interface Admitted extends Judged {
  readonly lease: Lease;
}

/**
 * The admission pipeline every entry point goes through: authenticate → read
 * the request into facts (the only place a body is parsed, once) → decide and
 * record → a verdict. A request that is refused anywhere leaves through
 * `refuse`, answered, recorded, logged and counted, and this resolves to null.
 * A check is judged, never refused by its decision: its caller answers it.
 */
export async function admit(ctx: GatewayContext, entry: Entry & { kind: 'check' }): Promise<Judged | null>;
export async function admit(ctx: GatewayContext, entry: Entry): Promise<Admitted | null>;
export async function admit(ctx: GatewayContext, entry: Entry): Promise<Judged | Admitted | null> {
  let key: ApiKeyRecord;
  try {
    key = authenticate(entry.req.headers, ctx.keys);
  } catch (err) {
    refuseUnauthenticated(ctx, entry, err);
    return null;
  }

  const known = { metadata: NO_METADATA, bodyBytes: 0 };
  let question: Question;
  try {
    question = await entry.read(entry.req, known);
  } catch (err) {
    const input = governInput(entry, key, { operation: entry.operation, model: null, metadata: known.metadata, request: { ...NO_REQUEST_FACTS, body_bytes: known.bodyBytes } });
    await refuse(ctx, entry, key, err, { row: 'write', input }, null, entry.operation);
    return null;
  }

  let governed: Governed;
  try {
    governed = await govern(ctx, governInput(entry, key, question));
  } catch (err) {
    await refuse(ctx, entry, key, err, { row: 'failed' }, question.model, question.operation);
    return null;
  }
  const { verdict } = governed;
  if (verdict.kind === 'answer') return { key, question, governed };
  if (verdict.kind === 'refuse') {
    await refuse(ctx, entry, key, verdict.error, { row: 'written', headers: governed.headers }, question.model, question.operation);
    return null;
  }
  return { key, question, governed, lease: verdict.lease };
}

function governInput(entry: Entry, key: ApiKeyRecord, q: Pick<Question, 'operation' | 'model' | 'metadata' | 'request'> & Partial<Question>): GovernInput {
  return {
    requestId: entry.requestId,
    kind: entry.kind,
    method: entry.req.method ?? 'GET',
    key,
    operation: q.operation,
    model: q.model,
    metadata: q.metadata,
    request: q.request,
    mintsCredential: q.mintsCredential ?? false,
    batchFile: q.reading?.batchFile ?? null,
    batchInputFile: q.reading?.batchInputFile ?? null,
  };
}

/** The reader of the governed API surface: the route's operation, read from the head, the metadata header and the body. */
export function apiRequestReader(ctx: GatewayContext, operation: Operation, search: string): QuestionReader {
  return async (req, known) => {
    checkRequestHead(operation, req.headers, req.rawHeaders, search);
    known.metadata = parseGovernanceMetadata(req.headers[METADATA_HEADER]);
    const upload = isMultipart(req.headers['content-type']);
    const body = operation.websocket
      ? EMPTY
      : await readBody(req, upload ? ctx.config.server.maxUploadBytes : ctx.config.server.maxBodyBytes, upload ? 'server.max_upload_bytes' : 'server.max_body_bytes');
    known.bodyBytes = body.length;
    const reading = await readRequest(operation, req.headers['content-type'], search, body);
    return { operation: operation.name, model: reading.model, metadata: known.metadata, request: reading.request, reading, mintsCredential: operation.mintsCredential };
  };
}
