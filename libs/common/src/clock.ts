import { Injectable } from '@nestjs/common';

/**
 * The time source. Injected everywhere expiry, jitter or lead time is computed so tests
 * can move time instead of sleeping.
 */
@Injectable()
export class Clock {
  now(): Date {
    return new Date(this.nowMs());
  }

  nowMs(): number {
    return Date.now();
  }
}

/** A clock tests can set and advance. */
export class ManualClock extends Clock {
  constructor(private current = Date.UTC(2026, 0, 1)) {
    super();
  }

  override nowMs(): number {
    return this.current;
  }

  set(at: Date | number): void {
    this.current = typeof at === 'number' ? at : at.getTime();
  }

  advance(ms: number): void {
    this.current += ms;
  }
}
