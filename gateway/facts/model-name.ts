import { GatewayError } from '../errors/catalogue.js';

export const MAX_MODEL_LENGTH = 256;

/**
 * Printable ASCII without spaces: providers may trim, drop control
 * characters or fold Unicode in a model name before they look it up, and the
 * name the policy matched must be the one they serve.
 */
const MODEL_NAME = /^[\x21-\x7e]{1,256}$/;

/** The model as read from a request, or a 400 naming where it was read. */
export function checkedModel(value: unknown, param: string): string {
  if (typeof value !== 'string' || !MODEL_NAME.test(value)) {
    throw new GatewayError('invalid_request', `${param} must be 1 to ${MAX_MODEL_LENGTH} printable ASCII characters without spaces`, { param });
  }
  return value;
}
