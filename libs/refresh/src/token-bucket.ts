import { Clock } from '@app/common';

/**
 * A per-provider budget of token-endpoint calls: `perMinute` calls a minute, in bursts of at
 * most a tenth of that (at least one). Keeps a backlog from tripping a provider's rate limit.
 */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;
  private readonly capacity: number;
  private readonly perMs: number;

  constructor(
    perMinute: number,
    private readonly clock: Clock,
  ) {
    this.capacity = Math.max(1, Math.ceil(perMinute / 10));
    this.perMs = perMinute / 60_000;
    this.tokens = this.capacity;
    this.updatedAt = clock.nowMs();
  }

  /** Takes up to `wanted` whole tokens; returns how many it took. */
  take(wanted: number): number {
    this.refill();
    const taken = Math.max(0, Math.min(wanted, Math.floor(this.tokens)));
    this.tokens -= taken;
    return taken;
  }

  /** Gives back tokens taken for work that did not happen (nothing was due). */
  giveBack(count: number): void {
    this.tokens = Math.min(this.capacity, this.tokens + count);
  }

  /** Milliseconds until at least one token is available. */
  msUntilNext(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil((1 - this.tokens) / this.perMs);
  }

  private refill(): void {
    const now = this.clock.nowMs();
    // The clock is the wall clock: a step backwards (NTP) must not take tokens away, or an empty
    // bucket would make the sweeper wait as long as the step before it refreshes again.
    const elapsed = Math.max(0, now - this.updatedAt);
    this.tokens = Math.min(this.capacity, this.tokens + elapsed * this.perMs);
    this.updatedAt = now;
  }
}
