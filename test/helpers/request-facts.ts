import type { RequestFacts } from '../../gateway/policy/request-facts.js';

export type FactsOverride = Partial<Omit<RequestFacts, 'request'>> & { request?: Partial<RequestFacts['request']> };

/** A chat completion by acme to OpenAI's gpt-4o-mini, with `over` on top; `request` is merged, not replaced. */
export function requestFacts(over: FactsOverride = {}): RequestFacts {
  const { request, ...top } = over;
  return {
    customer: 'acme',
    key: 'key_0000000000000001',
    model: 'gpt-4o-mini',
    operation: 'chat.completions',
    provider: 'openai',
    metadata: {},
    ...top,
    request: { stream: false, max_tokens: null, messages: 1, tools: null, body_bytes: 100, ...request },
  };
}
