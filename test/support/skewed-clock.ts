/**
 * Preloaded (`node -r`) into a broker child process to play a replica whose system clock is
 * TEST_CLOCK_SKEW_MS off: `Date.now()` and `new Date()` answer the skewed time, as they would on
 * a host whose clock drifted. Monotonic time (performance.now) is left alone, as it is on such
 * a host. See startBrokerProcess's `clockSkewMs`.
 */
const skewMs = Number(process.env.TEST_CLOCK_SKEW_MS ?? '0');

if (Number.isFinite(skewMs) && skewMs !== 0) {
  const RealDate = Date;
  globalThis.Date = new Proxy(RealDate, {
    construct(target, args: unknown[]) {
      return args.length === 0 ? new target(target.now() + skewMs) : (Reflect.construct(target, args) as Date);
    },
    apply() {
      return new RealDate(RealDate.now() + skewMs).toString();
    },
    get(target, property, receiver) {
      return property === 'now' ? () => target.now() + skewMs : (Reflect.get(target, property, receiver) as unknown);
    },
  });
}
