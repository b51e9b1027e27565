/**
 * The OpenAI API surface the gateway governs: every route it forwards, the
 * operation name the policy sees for each method, and where the provider reads
 * the model. A route that is not here is not forwarded: the gateway cannot
 * say what a provider would do with it.
 */

/** Where the provider reads a request's model from. */
export type ModelSource =
  | { readonly in: 'none' }
  /** A JSON body field, possibly nested (`session.model`); `required: false` means checked when present. */
  | { readonly in: 'json'; readonly path: readonly string[]; readonly required: boolean }
  /** The `model` field of a multipart form. */
  | { readonly in: 'form' }
  /** The `model` query parameter (the realtime WebSocket). */
  | { readonly in: 'query' };

export type BodyFormat = 'json' | 'multipart' | 'none';

export type Method = 'GET' | 'POST' | 'DELETE';

export interface Operation {
  readonly name: string;
  readonly method: Method;
  readonly body: BodyFormat;
  readonly model: ModelSource;
  /** Hands out a credential that reaches the provider without the gateway (realtime client secrets). */
  readonly mintsCredential: boolean;
  /** Only as a WebSocket handshake. */
  readonly websocket: boolean;
}

export type RouteMatch =
  | { readonly kind: 'operation'; readonly operation: Operation }
  | { readonly kind: 'method_not_allowed'; readonly allow: readonly Method[] }
  | { readonly kind: 'unknown' };

const NONE: ModelSource = Object.freeze({ in: 'none' });
const BODY_MODEL: ModelSource = Object.freeze({ in: 'json', path: ['model'], required: true });
const FORM_MODEL: ModelSource = Object.freeze({ in: 'form' });

interface Spec {
  readonly body?: BodyFormat;
  readonly model?: ModelSource;
  readonly mintsCredential?: boolean;
  readonly websocket?: boolean;
  /** A name other than the one the method rule gives. */
  readonly name?: string;
}

type RouteSpec = Partial<Record<Method, Spec>>;

const CREATE: RouteSpec = { POST: {}, GET: {} };
const ITEM: RouteSpec = { GET: {}, POST: {}, DELETE: {} };
const ACTION: RouteSpec = { POST: {} };
const LIST: RouteSpec = { GET: {} };
const READ: RouteSpec = { GET: {} };

/** Templates: `{id}` stands for one path segment (a resource id). */
const CATALOGUE: Readonly<Record<string, RouteSpec>> = {
  'chat/completions': { POST: { model: BODY_MODEL }, GET: {} },
  'chat/completions/{id}': ITEM,
  'chat/completions/{id}/messages': LIST,
  completions: { POST: { model: BODY_MODEL } },
  embeddings: { POST: { model: BODY_MODEL } },
  moderations: { POST: { model: BODY_MODEL } },
  responses: { POST: { model: BODY_MODEL } },
  'responses/input_tokens': { POST: { model: BODY_MODEL } },
  'responses/compact': { POST: { model: BODY_MODEL } },
  'responses/{id}': { GET: {}, DELETE: {} },
  'responses/{id}/cancel': ACTION,
  'responses/{id}/input_items': LIST,
  conversations: ACTION,
  'conversations/{id}': ITEM,
  'conversations/{id}/items': CREATE,
  'conversations/{id}/items/{id}': { GET: {}, DELETE: {} },
  'images/generations': { POST: { model: BODY_MODEL } },
  'images/edits': { POST: { body: 'multipart', model: FORM_MODEL } },
  'images/variations': { POST: { body: 'multipart', model: FORM_MODEL } },
  'audio/speech': { POST: { model: BODY_MODEL } },
  'audio/transcriptions': { POST: { body: 'multipart', model: FORM_MODEL } },
  'audio/translations': { POST: { body: 'multipart', model: FORM_MODEL } },
  models: LIST,
  'models/{id}': { GET: {}, DELETE: {} },
  files: { POST: { body: 'multipart' }, GET: {} },
  'files/{id}': { GET: {}, DELETE: {} },
  'files/{id}/content': READ,
  uploads: ACTION,
  'uploads/{id}/parts': { POST: { body: 'multipart' } },
  'uploads/{id}/complete': ACTION,
  'uploads/{id}/cancel': ACTION,
  batches: CREATE,
  'batches/{id}': READ,
  'batches/{id}/cancel': ACTION,
  'fine_tuning/jobs': { POST: { model: BODY_MODEL }, GET: {} },
  'fine_tuning/jobs/{id}': READ,
  'fine_tuning/jobs/{id}/cancel': ACTION,
  'fine_tuning/jobs/{id}/pause': ACTION,
  'fine_tuning/jobs/{id}/resume': ACTION,
  'fine_tuning/jobs/{id}/events': LIST,
  'fine_tuning/jobs/{id}/checkpoints': LIST,
  vector_stores: CREATE,
  'vector_stores/{id}': ITEM,
  'vector_stores/{id}/search': ACTION,
  'vector_stores/{id}/files': CREATE,
  'vector_stores/{id}/files/{id}': ITEM,
  'vector_stores/{id}/files/{id}/content': READ,
  'vector_stores/{id}/file_batches': ACTION,
  'vector_stores/{id}/file_batches/{id}': READ,
  'vector_stores/{id}/file_batches/{id}/cancel': ACTION,
  'vector_stores/{id}/file_batches/{id}/files': LIST,
  assistants: { POST: { model: BODY_MODEL }, GET: {} },
  'assistants/{id}': { GET: {}, POST: { model: { in: 'json', path: ['model'], required: false } }, DELETE: {} },
  threads: ACTION,
  'threads/runs': { POST: { model: BODY_MODEL } },
  'threads/{id}': ITEM,
  'threads/{id}/messages': CREATE,
  'threads/{id}/messages/{id}': ITEM,
  'threads/{id}/runs': { POST: { model: BODY_MODEL }, GET: {} },
  'threads/{id}/runs/{id}': { GET: {}, POST: {} },
  'threads/{id}/runs/{id}/cancel': ACTION,
  'threads/{id}/runs/{id}/submit_tool_outputs': ACTION,
  'threads/{id}/runs/{id}/steps': LIST,
  'threads/{id}/runs/{id}/steps/{id}': READ,
  realtime: { GET: { websocket: true, body: 'none', model: { in: 'query' }, name: 'realtime' } },
  'realtime/sessions': { POST: { model: BODY_MODEL, mintsCredential: true } },
  'realtime/transcription_sessions': { POST: { mintsCredential: true } },
  'realtime/client_secrets': { POST: { model: { in: 'json', path: ['session', 'model'], required: true }, mintsCredential: true } },
};

/**
 * The operation's name: the route's words joined by dots, and for every method
 * but POST on a collection, what the method does (`.list`, `.get`, `.delete`;
 * `.update` for a POST to one resource). A GET of `…/content` reads one thing.
 */
function nameOf(template: string, method: Method): string {
  const segments = template.split('/');
  const base = segments.filter((s) => s !== '{id}').join('.');
  const onItem = segments[segments.length - 1] === '{id}';
  if (method === 'DELETE') return `${base}.delete`;
  if (method === 'POST') return onItem ? `${base}.update` : base;
  return onItem || segments[segments.length - 1] === 'content' ? `${base}.get` : `${base}.list`;
}

interface Node {
  readonly literals: Map<string, Node>;
  id: Node | null;
  operations: Partial<Record<Method, Operation>> | null;
}

function newNode(): Node {
  return { literals: new Map(), id: null, operations: null };
}

function build(): Node {
  const root = newNode();
  for (const [template, spec] of Object.entries(CATALOGUE)) {
    let node = root;
    for (const segment of template.split('/')) {
      if (segment === '{id}') node = node.id ??= newNode();
      else {
        let next = node.literals.get(segment);
        if (!next) node.literals.set(segment, (next = newNode()));
        node = next;
      }
    }
    const operations: Partial<Record<Method, Operation>> = {};
    for (const [method, s] of Object.entries(spec) as [Method, Spec][]) {
      operations[method] = Object.freeze({
        name: s.name ?? nameOf(template, method),
        method,
        body: s.body ?? (method === 'POST' ? 'json' : 'none'),
        model: s.model ?? NONE,
        mintsCredential: s.mintsCredential ?? false,
        websocket: s.websocket ?? false,
      });
    }
    node.operations = Object.freeze(operations);
  }
  return root;
}

const ROOT = build();

/**
 * The route `pathname` (which starts with `/v1/`) names for `method`. Literal
 * words win over ids, and match exactly: a path that matches only when case
 * is ignored is unknown, since a provider may route it elsewhere. One trailing
 * slash names the same route.
 */
export function matchRoute(method: string, pathname: string): RouteMatch {
  const trimmed = pathname.endsWith('/') ? pathname.slice(4, -1) : pathname.slice(4);
  const node = walk(ROOT, trimmed.split('/'), 0);
  if (!node?.operations) return { kind: 'unknown' };
  // Own properties only: a method named like an Object member (`constructor`) is not a route's.
  const operation = Object.hasOwn(node.operations, method) ? node.operations[method as Method] : undefined;
  if (operation) return { kind: 'operation', operation };
  return { kind: 'method_not_allowed', allow: Object.keys(node.operations) as Method[] };
}

function walk(node: Node, segments: readonly string[], at: number): Node | null {
  if (at === segments.length) return node;
  const segment = segments[at]!;
  if (segment === '') return null;
  const literal = node.literals.get(segment);
  const found = literal ? walk(literal, segments, at + 1) : null;
  if (found?.operations) return found;
  // A segment that differs from a route word only in case is that word misspelt, not an id.
  if (node.id && !literalIgnoringCase(node, segment)) return walk(node.id, segments, at + 1);
  return null;
}

function literalIgnoringCase(node: Node, segment: string): boolean {
  const lower = segment.toLowerCase();
  for (const word of node.literals.keys()) if (word.toLowerCase() === lower) return true;
  return false;
}

/** The whole catalogue, route by route, for the docs (and the test that holds them to it). */
export function catalogue(): { readonly path: string; readonly operation: Operation }[] {
  return Object.entries(CATALOGUE).flatMap(([template, spec]) =>
    (Object.keys(spec) as Method[]).map((method) => {
      const match = matchRoute(method, `/v1/${template.replaceAll('{id}', 'x_id')}`);
      if (match.kind !== 'operation') throw new Error(`catalogue route ${method} ${template} does not match itself`);
      return { path: `/v1/${template}`, operation: match.operation };
    }),
  );
}
