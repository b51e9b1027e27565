/** Scalar values a governance metadata header may carry. */
export type MetadataValue = string | number | boolean;

/**
 * Everything the policy may look at about one request. Content-free by
 * construction: counts and sizes, never the messages themselves.
 */
export interface RequestFacts {
  readonly customer: string;
  /** The API key's id, never the secret. */
  readonly key: string;
  readonly model: string | null;
  readonly operation: string;
  readonly provider: string | null;
  readonly metadata: Readonly<Record<string, MetadataValue>>;
  readonly request: {
    readonly stream: boolean;
    readonly max_tokens: number | null;
    readonly messages: number | null;
    readonly tools: number | null;
    readonly body_bytes: number;
  };
}

export type FactValue = MetadataValue | null | undefined;
