import type { Limiter, Reservation } from '../limits/limiter.js';
import type { Provider, ProviderRouter } from './provider-router.js';

/**
 * What a forwarded request holds until it is over: one of its provider's
 * `max_in_flight` places (none for a WebSocket session) and the tokens
 * reserved against its limits. Both go back in `release`, once, whatever
 * path the request took.
 */
export class Lease {
  private released = false;

  constructor(
    private readonly providers: ProviderRouter,
    private readonly limiter: Limiter,
    readonly provider: Provider,
    private readonly holdsSlot: boolean,
    readonly reservation: Reservation | null,
  ) {}

  /** `tokensUsed` as `Limiter.settle` takes it: the tokens used, 0 for none, null to keep the reservation. */
  release(tokensUsed: number | null): void {
    if (this.released) return;
    this.released = true;
    if (this.holdsSlot) this.providers.release(this.provider);
    if (this.reservation) this.limiter.settle(this.reservation, tokensUsed);
  }
}
