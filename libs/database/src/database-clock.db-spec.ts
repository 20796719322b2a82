import { DataSource } from 'typeorm';
import { openTestDataSource } from '../../../test/support/test-database';
import { DatabaseClock } from './database-clock';

/** A replica whose own clock is `skewMs` off. */
class SkewedDatabaseClock extends DatabaseClock {
  constructor(
    dataSource: DataSource,
    private readonly skewMs: number,
  ) {
    super(dataSource);
  }

  protected override localNowMs(): number {
    return Date.now() + this.skewMs;
  }
}

async function databaseNowMs(dataSource: DataSource): Promise<number> {
  const [{ ms }] = await dataSource.query<Array<{ ms: string }>>(`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`);
  return Number(ms);
}

describe('DatabaseClock (real Postgres)', () => {
  let dataSource: DataSource;

  beforeAll(async () => {
    dataSource = await openTestDataSource();
  });

  afterAll(async () => {
    await dataSource.destroy();
  });

  it.each([
    ['ten minutes ahead', 600_000],
    ['ten minutes behind', -600_000],
  ])('tells the database’s time on a replica whose clock is %s', async (_label, skewMs) => {
    const clock = new SkewedDatabaseClock(dataSource, skewMs);
    expect(Math.abs(clock.nowMs() - Date.now() - skewMs)).toBeLessThan(1_000); // before the first sync: the local clock

    await clock.sync();

    const before = await databaseNowMs(dataSource);
    const told = clock.nowMs();
    const after = await databaseNowMs(dataSource);
    // Within the round trips around it (generous: this is a shared 2-core machine).
    expect(told).toBeGreaterThanOrEqual(before - 250);
    expect(told).toBeLessThanOrEqual(after + 250);
    expect(Math.round(clock.offset / 60_000)).toBe(-skewMs / 60_000);
  });

  it('keeps the last offset when the database cannot be read', async () => {
    const clock = new SkewedDatabaseClock(dataSource, 120_000);
    await clock.sync();
    const offset = clock.offset;
    const closed = await openTestDataSource();
    const broken = new SkewedDatabaseClock(closed, 120_000);
    await broken.sync();
    await closed.destroy();
    await expect(broken.sync()).rejects.toThrow();
    expect(Math.abs(broken.offset - offset)).toBeLessThan(1_000);
  });
});
