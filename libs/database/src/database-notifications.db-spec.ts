import { DataSource } from 'typeorm';
import { openTestDataSource, testDatabaseUrl } from '../../../test/support/test-database';
import { DatabaseNotifications } from './database-notifications';

async function eventually(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('DatabaseNotifications (real Postgres)', () => {
  let dataSource: DataSource;
  let notifications: DatabaseNotifications;

  beforeAll(async () => {
    dataSource = await openTestDataSource();
  });

  afterEach(async () => {
    await notifications?.onApplicationShutdown();
  });

  afterAll(async () => {
    await dataSource.destroy();
  });

  it('delivers NOTIFYs to their channel’s subscribers once live, and tells late liveness subscribers at once', async () => {
    notifications = new DatabaseNotifications(testDatabaseUrl(), dataSource);
    const early: boolean[] = [];
    notifications.onLiveChange((live) => early.push(live));
    const payloads: string[] = [];
    await notifications.subscribe('test_channel', (payload) => payloads.push(payload));
    expect(notifications.live).toBe(true);
    expect(early).toEqual([true]);

    const late: boolean[] = [];
    notifications.onLiveChange((live) => late.push(live));
    expect(late).toEqual([true]);

    await dataSource.query(`SELECT pg_notify('test_channel', 'hello'), pg_notify('other_channel', 'ignored')`);
    await eventually(() => payloads.length > 0);
    expect(payloads).toEqual(['hello']);

    await notifications.onApplicationShutdown();
    expect(notifications.live).toBe(false);
    expect(early).toEqual([true, false]);
    expect(late).toEqual([true, false]);
  });

  it('refuses a channel name that is not a plain identifier', async () => {
    notifications = new DatabaseNotifications(testDatabaseUrl(), dataSource);
    await expect(notifications.subscribe('x; DROP TABLE connections', () => undefined)).rejects.toThrow(/invalid channel name/);
  });
});
