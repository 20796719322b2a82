import { ManualClock } from '@app/common';
import { TokenBucket } from './token-bucket';

describe('TokenBucket', () => {
  let clock: ManualClock;
  beforeEach(() => {
    clock = new ManualClock();
  });

  it('starts full: bursts of a tenth of the per-minute budget', () => {
    expect(new TokenBucket(600, clock).take(1_000)).toBe(60);
    expect(new TokenBucket(1_200, clock).take(1_000)).toBe(120);
    // Rounded up, and never below one call.
    expect(new TokenBucket(15, clock).take(1_000)).toBe(2);
    expect(new TokenBucket(1, clock).take(1_000)).toBe(1);
  });

  it('hands out part of a take when fewer tokens are left than wanted', () => {
    const bucket = new TokenBucket(600, clock);
    expect(bucket.take(50)).toBe(50);
    expect(bucket.take(50)).toBe(10);
    expect(bucket.take(50)).toBe(0);
  });

  it('takes nothing for a take of zero or less, and that leaves the bucket as it was', () => {
    const bucket = new TokenBucket(600, clock);
    expect(bucket.take(0)).toBe(0);
    expect(bucket.take(-5)).toBe(0);
    expect(bucket.take(1_000)).toBe(60);
  });

  it('refills at the per-minute rate as the clock moves, without sleeping', () => {
    const bucket = new TokenBucket(600, clock);
    bucket.take(60);
    clock.advance(1_000);
    expect(bucket.take(1_000)).toBe(10);
    clock.advance(500);
    expect(bucket.take(1_000)).toBe(5);
  });

  it('keeps fractions of a token until they add up to a whole one', () => {
    const bucket = new TokenBucket(600, clock); // one token per 100 ms
    bucket.take(60);
    clock.advance(60);
    expect(bucket.take(1)).toBe(0);
    clock.advance(60);
    expect(bucket.take(5)).toBe(1);
    // 20 ms of the 120 were left over: about 80 more make the next token.
    clock.advance(70);
    expect(bucket.take(1)).toBe(0);
    clock.advance(12);
    expect(bucket.take(1)).toBe(1);
  });

  it('never holds more than its capacity, however long it sits idle', () => {
    const bucket = new TokenBucket(600, clock);
    bucket.take(10);
    clock.advance(24 * 3_600_000);
    expect(bucket.take(1_000)).toBe(60);
    expect(bucket.take(1_000)).toBe(0);
  });

  it('takes back tokens for work that did not happen, up to its capacity', () => {
    const bucket = new TokenBucket(600, clock);
    expect(bucket.take(60)).toBe(60);
    bucket.giveBack(25);
    expect(bucket.take(1_000)).toBe(25);
    bucket.giveBack(1_000);
    expect(bucket.take(1_000)).toBe(60);
  });

  it('a give-back on a full bucket does not raise the next burst above capacity', () => {
    const bucket = new TokenBucket(600, clock);
    bucket.giveBack(10);
    expect(bucket.take(1_000)).toBe(60);
  });

  describe('msUntilNext', () => {
    it('is 0 while a token is available', () => {
      const bucket = new TokenBucket(600, clock);
      expect(bucket.msUntilNext()).toBe(0);
      bucket.take(59);
      expect(bucket.msUntilNext()).toBe(0);
    });

    it('says how long until the next whole token once the bucket is empty', () => {
      const bucket = new TokenBucket(600, clock);
      bucket.take(60);
      expect(bucket.msUntilNext()).toBe(100);
      clock.advance(30);
      expect(bucket.msUntilNext()).toBe(70);
      clock.advance(70);
      expect(bucket.msUntilNext()).toBe(0);
      expect(bucket.take(1)).toBe(1);
    });

    it('waits a whole minute at a budget of one call a minute', () => {
      const bucket = new TokenBucket(1, clock);
      expect(bucket.take(1)).toBe(1);
      expect(bucket.msUntilNext()).toBe(60_000);
      clock.advance(59_999);
      expect(bucket.take(1)).toBe(0);
      clock.advance(1);
      expect(bucket.take(1)).toBe(1);
    });
  });

  describe('when the wall clock steps backwards (an NTP correction)', () => {
    it('does not lose the tokens it holds', () => {
      const bucket = new TokenBucket(600, clock);
      bucket.take(20);
      clock.advance(-3_600_000);
      expect(bucket.take(1_000)).toBe(40);
    });

    it('does not stall the sweep for as long as the clock went back', () => {
      const bucket = new TokenBucket(1_200, clock); // one token per 50 ms
      bucket.take(120);
      clock.advance(-3_600_000);
      // One token's worth of waiting, as before the step, not an hour.
      expect(bucket.msUntilNext()).toBe(50);
      clock.advance(50);
      expect(bucket.take(1)).toBe(1);
    });
  });
});
