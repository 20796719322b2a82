import { isoTime } from './iso-time';

describe('isoTime', () => {
  it('writes what Date.prototype.toISOString writes', () => {
    const edges = [
      0,
      1,
      999,
      Date.UTC(2000, 1, 29, 23, 59, 59, 999), // a leap day in a century leap year
      Date.UTC(2100, 1, 28, 12), // 2100 is not a leap year
      Date.UTC(2100, 2, 1),
      Date.UTC(2024, 11, 31, 23, 59, 59, 999),
      Date.UTC(2025, 0, 1),
      Date.UTC(9999, 11, 31, 23, 59, 59, 999),
    ];
    for (const ms of edges) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    for (let i = 0; i < 200_000; i++) {
      const ms = Math.floor(Math.random() * Date.UTC(10000, 0, 1));
      if (isoTime(ms) !== new Date(ms).toISOString()) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
    }
  });

  it('leaves what it does not format to the builtin: before 1970, after 9999, fractions of a millisecond', () => {
    for (const ms of [-1, Date.UTC(1969, 11, 31, 23, 59, 59, 999), Date.UTC(10000, 0, 1), 1.5]) expect(isoTime(ms)).toBe(new Date(ms).toISOString());
  });
});
