/**
 * The one catalogue of errors the gateway answers with. Every refusal carries a
 * stable `code` (match on it, never on the message), an HTTP status and an
 * OpenAI-shaped body, so the OpenAI SDKs raise their usual typed errors.
 */
export const ERROR_CATALOGUE = {
  invalid_api_key: { status: 401, type: 'invalid_request_error' },
  invalid_admin_token: { status: 401, type: 'invalid_request_error' },
  policy_blocked: { status: 403, type: 'policy_violation' },
  model_not_found: { status: 404, type: 'invalid_request_error' },
  route_not_found: { status: 404, type: 'invalid_request_error' },
  method_not_allowed: { status: 405, type: 'invalid_request_error' },
  invalid_request: { status: 400, type: 'invalid_request_error' },
  request_too_large: { status: 413, type: 'invalid_request_error' },
  unsupported_content_encoding: { status: 415, type: 'invalid_request_error' },
  request_timeout: { status: 408, type: 'invalid_request_error' },
  headers_too_large: { status: 431, type: 'invalid_request_error' },
  // OpenAI's own 429s: `type` says what ran out, `requests` or `tokens` (a token rate limit overrides it).
  rate_limit_exceeded: { status: 429, type: 'requests' },
  budget_exceeded: { status: 429, type: 'tokens' },
  audit_unavailable: { status: 503, type: 'server_error' },
  limits_unavailable: { status: 503, type: 'server_error' },
  overloaded: { status: 503, type: 'server_error' },
  upstream_unavailable: { status: 502, type: 'server_error' },
  upstream_timeout: { status: 504, type: 'server_error' },
  internal_error: { status: 500, type: 'server_error' },
} as const satisfies Record<string, { status: number; type: string }>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: ErrorCode };
}

export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;

  /** The message is shown to the client: it must never quote request content or secrets. */
  constructor(code: ErrorCode, message: string, options: { param?: string; cause?: unknown; type?: string } = {}) {
    super(message, { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = ERROR_CATALOGUE[code].status;
    this.type = options.type ?? ERROR_CATALOGUE[code].type;
    this.param = options.param ?? null;
  }

  toBody(): OpenAIErrorBody {
    return { error: { message: this.message, type: this.type, param: this.param, code: this.code } };
  }
}
