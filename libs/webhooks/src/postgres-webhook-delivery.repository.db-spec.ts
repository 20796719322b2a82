/**
 * PostgresWebhookDeliveryRepository against real Postgres: dispatchNew makes one delivery per
 * event and endpoint (and only marks events when there is no endpoint); claimDue hands out only
 * the earliest pending delivery of each (endpoint, stream), never the same row to two owners
 * claiming side by side, and not again while its lease runs; complete is fenced by the lease
 * owner; retry puts a failed delivery back with a fresh budget and reports any other state.
 */
import { DataSource } from 'typeorm';
import { openTestDataSource, truncateAll } from '../../../test/support/test-database';
import { PostgresWebhookDeliveryRepository } from './postgres-webhook-delivery.repository';

const A = 'https://a.example.com/hooks?token=secret-a';
const B = 'https://b.example.com/hooks';

describe('PostgresWebhookDeliveryRepository (real Postgres)', () => {
  let dataSource: DataSource;
  let repository: PostgresWebhookDeliveryRepository;

  beforeAll(async () => {
    dataSource = await openTestDataSource();
    repository = new PostgresWebhookDeliveryRepository(dataSource);
  });
  afterAll(async () => dataSource.destroy());
  beforeEach(async () => truncateAll(dataSource));

  /** Records an event of `account` (its own stream) as the repositories would; returns its id. */
  const record = async (account: string, type = 'connection.connected'): Promise<string> => {
    const [{ id }] = await dataSource.query(
      `INSERT INTO lifecycle_events (type, connection_id, account, provider, reason, connection)
       VALUES ($1, md5($2)::uuid, $2, 'copyai', 'oauth2', '{}'::jsonb) RETURNING id::text`,
      [type, account],
    );
    return id as string;
  };

  it('dispatches each event once, one delivery per endpoint; with no endpoint it only marks them', async () => {
    await record('acme');
    await record('globex');
    expect(await repository.dispatchNew([A, B], 500)).toBe(2);
    expect(await repository.dispatchNew([A, B], 500)).toBe(0);
    expect(await dataSource.query(`SELECT endpoint, count(*)::int AS n FROM webhook_deliveries GROUP BY endpoint ORDER BY endpoint`)).toEqual([
      { endpoint: A, n: 2 },
      { endpoint: B, n: 2 },
    ]);
    await record('initech');
    expect(await repository.dispatchNew([], 500)).toBe(1);
    expect(await dataSource.query(`SELECT count(*)::int AS n FROM webhook_deliveries`)).toEqual([{ n: 4 }]);
    expect(await dataSource.query(`SELECT count(*)::int AS n FROM lifecycle_events WHERE NOT dispatched`)).toEqual([{ n: 0 }]);
  });

  it('claims only the earliest pending delivery of each stream and endpoint, the next once it is done', async () => {
    const first = await record('acme');
    const second = await record('acme', 'connection.revoked');
    const other = await record('globex');
    await repository.dispatchNew([A, B], 500);
    const claimed = await repository.claimDue('r1', 15_000, 100);
    expect(claimed.map((c) => [c.event.id, c.endpoint, c.attempt]).sort()).toEqual(
      [
        [first, A, 1],
        [first, B, 1],
        [other, A, 1],
        [other, B, 1],
      ].sort(),
    );
    // Leased: nobody else gets them, and acme's second event waits behind its first.
    expect(await repository.claimDue('r2', 15_000, 100)).toEqual([]);
    const acmeAtA = claimed.find((c) => c.event.id === first && c.endpoint === A)!;
    // A retry of the first keeps the second waiting.
    expect(await repository.complete(acmeAtA.id, 'r1', { kind: 'retry', status: 500, error: 'answered 500', delayMs: 0 })).toBe(true);
    const again = await repository.claimDue('r2', 15_000, 100);
    expect(again.map((c) => [c.event.id, c.endpoint, c.attempt])).toEqual([[first, A, 2]]);
    expect(await repository.complete(again[0].id, 'r2', { kind: 'delivered', status: 204 })).toBe(true);
    const next = await repository.claimDue('r2', 15_000, 100);
    expect(next.map((c) => [c.event.id, c.endpoint, c.event.type])).toEqual([[second, A, 'connection.revoked']]);
  });

  it('two owners claiming side by side never get the same delivery', async () => {
    for (let i = 0; i < 60; i++) await record(`tenant-${i}`);
    await repository.dispatchNew([A], 500);
    const batches = await Promise.all(['r1', 'r2', 'r3'].flatMap((owner) => [repository.claimDue(owner, 15_000, 15), repository.claimDue(owner, 15_000, 15)]));
    const ids = batches.flat().map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    const rest = await repository.claimDue('r4', 15_000, 100);
    expect(ids.length + rest.length).toBe(60);
  });

  it('a lapsed lease goes to another owner, and the first owner can no longer write its result', async () => {
    await record('acme');
    await repository.dispatchNew([A], 500);
    const [mine] = await repository.claimDue('r1', 1, 10);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const [theirs] = await repository.claimDue('r2', 15_000, 10);
    expect(theirs).toMatchObject({ id: mine.id, attempt: 2 });
    expect(await repository.complete(mine.id, 'r1', { kind: 'delivered', status: 204 })).toBe(false);
    expect(await repository.complete(theirs.id, 'r2', { kind: 'given_up', status: 500, error: 'answered 500' })).toBe(true);
    // Written once: a late duplicate write of the same owner finds it no longer pending.
    expect(await repository.complete(theirs.id, 'r2', { kind: 'delivered', status: 204 })).toBe(false);
    const [view] = await repository.list({ status: 'failed' }, 10);
    expect(view).toMatchObject({ id: mine.id, status: 'failed', attempts: 2, lastStatus: 500, endpoint: 'https://a.example.com' });
  });

  it('retry: a failed delivery is pending again with a fresh budget; others report their status; unknown is null', async () => {
    await record('acme');
    await record('globex');
    await repository.dispatchNew([A], 500);
    const [failing, delivering] = await repository.claimDue('r1', 15_000, 10);
    await repository.complete(failing.id, 'r1', { kind: 'given_up', status: null, error: 'no answer' });
    await repository.complete(delivering.id, 'r1', { kind: 'delivered', status: 200 });
    const retried = await repository.retry(failing.id);
    expect(retried).toEqual({ retried: expect.objectContaining({ id: failing.id, status: 'pending', attempts: 0, webhookId: failing.event.id }) });
    expect(await repository.retry(failing.id)).toEqual({ status: 'pending' });
    expect(await repository.retry(delivering.id)).toEqual({ status: 'delivered' });
    expect(await repository.retry('999999999')).toBeNull();
    const [reclaimed] = await repository.claimDue('r2', 15_000, 10);
    expect(reclaimed).toMatchObject({ id: failing.id, attempt: 1 });
  });
});
