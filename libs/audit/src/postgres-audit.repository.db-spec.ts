import type { AuditRecord } from '@app/observability';
import { DataSource } from 'typeorm';
import { openTestDataSource, truncateAll } from '../../../test/support/test-database';
import { PostgresAuditRepository } from './postgres-audit.repository';

const T0 = Date.UTC(2026, 5, 1, 12, 0, 0);
const minute = (n: number): Date => new Date(T0 + n * 60_000);

const read = (at: Date, actor: string, account: string, provider: string | null, outcome: string, count: number): AuditRecord => ({
  at,
  action: 'token.read',
  actor,
  actorKind: 'service',
  account,
  provider,
  outcome,
  count,
});

describe('PostgresAuditRepository (real Postgres)', () => {
  let dataSource: DataSource;
  let repository: PostgresAuditRepository;

  beforeAll(async () => {
    dataSource = await openTestDataSource();
    repository = new PostgresAuditRepository(dataSource);
  });
  afterAll(async () => dataSource.destroy());

  describe('records', () => {
  beforeEach(async () => truncateAll(dataSource));

  it('adds token-read counts of the same minute, service, account, provider and outcome into one row, across writes', async () => {
    await repository.insert([
      read(minute(0), 'billing', 'acme', 'copyai', 'served', 3),
      read(minute(0), 'billing', 'acme', null, 'not_granted', 1),
      read(minute(0), 'crm', 'acme', 'copyai', 'served', 2),
    ]);
    // Another flush, or another replica, writing the same minute.
    await repository.insert([read(minute(0), 'billing', 'acme', 'copyai', 'served', 4), read(minute(0), 'billing', 'acme', null, 'not_granted', 2), read(minute(1), 'billing', 'acme', 'copyai', 'served', 1)]);

    const { items } = await repository.list({ action: 'token.read' }, null, 50);
    const rows = items.map(({ at, actor, account, provider, outcome, count }) => ({ at: at.getTime(), actor, account, provider, outcome, count }));
    expect(rows).toHaveLength(4);
    expect(rows).toEqual(
      expect.arrayContaining([
        { at: minute(1).getTime(), actor: 'billing', account: 'acme', provider: 'copyai', outcome: 'served', count: 1 },
        { at: minute(0).getTime(), actor: 'billing', account: 'acme', provider: 'copyai', outcome: 'served', count: 7 },
        { at: minute(0).getTime(), actor: 'billing', account: 'acme', provider: null, outcome: 'not_granted', count: 3 },
        { at: minute(0).getTime(), actor: 'crm', account: 'acme', provider: 'copyai', outcome: 'served', count: 2 },
      ]),
    );
  });

  it('keeps every other event as a record of its own, with its detail', async () => {
    const revoke: AuditRecord = {
      at: minute(0),
      action: 'connection.revoke',
      actor: 'ops',
      actorKind: 'admin',
      account: 'acme',
      provider: 'copyai',
      outcome: 'revoked',
      requestId: 'req-1',
      detail: { erasedLocally: true, note: 'it\'s "quoted" \\ and ünïcode' },
    };
    await repository.insert([revoke, revoke]);
    const { items } = await repository.list({}, null, 10);
    expect(items).toEqual([
      { ...revoke, count: 1 },
      { ...revoke, count: 1 },
    ]);
  });

  it('writes single events and token reads of several services, providers and outcomes, interleaved, in one statement', async () => {
    const revoke: AuditRecord = { at: minute(0), action: 'connection.revoke', actor: 'ops', actorKind: 'admin', account: 'acme', provider: 'copyai', outcome: 'revoked', requestId: 'req-2' };
    // A refused read's account is whatever the caller sent: quotes, backslashes, non-ASCII.
    const odd = 'we"ird\\ äccount';
    await repository.insert([
      read(minute(0), 'billing', 'a-1', 'copyai', 'served', 2),
      revoke,
      read(minute(0), 'billing', 'a-2', 'copyai', 'served', 1),
      read(minute(0), 'crm', 'a-1', 'copyai', 'served', 5),
      read(minute(0), 'billing', 'a-3', 'copyai', 'served', 4),
      read(minute(0), 'billing', odd, null, 'invalid_account', 1),
      read(minute(1), 'billing', 'a-1', 'copyai', 'served', 3),
    ]);
    await repository.insert([read(minute(0), 'billing', odd, null, 'invalid_account', 2), read(minute(0), 'billing', 'a-2', 'copyai', 'served', 1)]);

    const { items } = await repository.list({}, null, 50);
    const rows = items.map(({ at, action, actor, account, provider, outcome, count, requestId }) => ({ at: at.getTime(), action, actor, account, provider, outcome, count, requestId }));
    expect(rows).toHaveLength(7);
    const tokenRead = (at: Date, actor: string, account: string, provider: string | null, outcome: string, count: number) =>
      ({ at: at.getTime(), action: 'token.read', actor, account, provider, outcome, count, requestId: null });
    expect(rows).toEqual(
      expect.arrayContaining([
        { at: minute(0).getTime(), action: 'connection.revoke', actor: 'ops', account: 'acme', provider: 'copyai', outcome: 'revoked', count: 1, requestId: 'req-2' },
        tokenRead(minute(0), 'billing', 'a-1', 'copyai', 'served', 2),
        tokenRead(minute(0), 'billing', 'a-2', 'copyai', 'served', 2),
        tokenRead(minute(0), 'billing', 'a-3', 'copyai', 'served', 4),
        tokenRead(minute(0), 'crm', 'a-1', 'copyai', 'served', 5),
        tokenRead(minute(0), 'billing', odd, null, 'invalid_account', 3),
        tokenRead(minute(1), 'billing', 'a-1', 'copyai', 'served', 3),
      ]),
    );
  });

  it('stores a NUL or a lone surrogate in an account or provider as U+FFFD instead of failing the batch', async () => {
    // What a caller can send (%00 in the path), and what clipping at 128 characters can leave (half an emoji).
    const nul = 'ac\u0000me';
    const clipped = `${'x'.repeat(127)}\ud83d…`;
    await repository.insert([
      read(minute(0), 'billing', nul, 'copy\u0000ai', 'invalid_account', 1),
      // Stored alike once made storable: one row, both counts.
      read(minute(0), 'billing', 'ac\ud800me', 'copy\u0000ai', 'invalid_account', 2),
      read(minute(0), 'billing', clipped, null, 'invalid_account', 1),
      read(minute(0), 'billing', 'fine-😀', 'copyai', 'served', 1),
      { at: minute(0), action: 'connection.revoke', actor: 'ops', actorKind: 'admin', account: nul, provider: 'copyai', outcome: 'revoked' },
    ]);
    const { items } = await repository.list({}, null, 10);
    expect(items.map(({ action, account, provider, count }) => ({ action, account, provider, count }))).toEqual(
      expect.arrayContaining([
        { action: 'token.read', account: 'ac\ufffdme', provider: 'copy\ufffdai', count: 3 },
        { action: 'token.read', account: `${'x'.repeat(127)}\ufffd…`, provider: null, count: 1 },
        { action: 'token.read', account: 'fine-😀', provider: 'copyai', count: 1 },
        { action: 'connection.revoke', account: 'ac\ufffdme', provider: 'copyai', count: 1 },
      ]),
    );
    expect(items).toHaveLength(4);
  });

  it('writes read rows in one order whatever order they come in, so replicas flushing the same rows wait for each other instead of deadlocking', async () => {
    const rows = Array.from({ length: 2_000 }, (_, i) => read(minute(0), 'billing', `acct-${i}`, 'copyai', 'served', 1));
    await repository.insert(rows);
    // Two replicas add to the same 2,000 rows at once, each having counted them in another order.
    const second = new PostgresAuditRepository(await openTestDataSource());
    try {
      await Promise.all([repository.insert(rows), second.insert([...rows].reverse())]);
    } finally {
      await (second as unknown as { dataSource: DataSource }).dataSource.destroy();
    }
    const counts: Array<{ count: number; n: string }> = await dataSource.query(`SELECT count, count(*) AS n FROM audit_events GROUP BY count`);
    expect(counts).toEqual([{ count: 3, n: '2000' }]);
  });

  it('filters by account, provider, actor, action and time, newest first, and pages through every match once', async () => {
    const records: AuditRecord[] = [];
    for (let i = 0; i < 25; i++) {
      records.push({
        at: minute(i),
        action: i % 5 === 0 ? 'connection.revoke' : 'connections.get',
        actor: i % 2 === 0 ? 'ops' : 'oncall',
        actorKind: 'admin',
        account: i % 3 === 0 ? 'acme' : 'globex',
        provider: i % 4 === 0 ? 'copper' : 'copyai',
        outcome: 'ok',
      });
    }
    // Two records of the same instant: the id orders them.
    records.push({ ...records[24], outcome: 'second' });
    await repository.insert(records);

    const all = await collect({}, 4);
    expect(all.map((r) => r.at.getTime())).toEqual([...records].map((r) => r.at.getTime()).sort((a, b) => b - a));
    expect(all[0].outcome).toBe('second');
    expect(all[1].outcome).toBe('ok');

    const expectMatches = async (filter: Parameters<PostgresAuditRepository['list']>[0], keep: (r: AuditRecord) => boolean) => {
      const got = await collect(filter, 3);
      expect(got.map((r) => `${r.at.getTime()} ${r.outcome}`)).toEqual(all.filter(keep).map((r) => `${r.at.getTime()} ${r.outcome}`));
    };
    await expectMatches({ account: 'acme' }, (r) => r.account === 'acme');
    await expectMatches({ provider: 'copper' }, (r) => r.provider === 'copper');
    await expectMatches({ actor: 'oncall' }, (r) => r.actor === 'oncall');
    await expectMatches({ action: 'connection.revoke' }, (r) => r.action === 'connection.revoke');
    await expectMatches({ since: minute(5), until: minute(9) }, (r) => r.at >= minute(5) && r.at < minute(9));
    await expectMatches({ account: 'globex', actor: 'ops', since: minute(10) }, (r) => r.account === 'globex' && r.actor === 'ops' && r.at >= minute(10));

    await expect(repository.list({}, 'bm90IGEgY3Vyc29y', 10)).rejects.toMatchObject({ code: 'validation_failed' });
  });

  it('deletes records older than a cutoff, oldest first, at most a batch at a time', async () => {
    await repository.insert(Array.from({ length: 7 }, (_, i) => ({ at: minute(i), action: 'connections.list' as const, actor: 'ops', actorKind: 'admin' as const, outcome: 'ok' })));
    expect(await repository.deleteOlderThan(minute(5), 3)).toBe(3);
    expect(await repository.deleteOlderThan(minute(5), 3)).toBe(2);
    expect(await repository.deleteOlderThan(minute(5), 3)).toBe(0);
    const left = await collect({}, 10);
    expect(left.map((r) => r.at)).toEqual([minute(6), minute(5)]);
  });

  });

  describe('at a million records', () => {
    beforeAll(async () => {
      await truncateAll(dataSource);
      // A month of a busy broker, token-read rows mostly: accounts, services, providers and actions
      // spread out. In slices, each well inside the pool's statement timeout.
      for (let from = 1; from <= 1_000_000; from += 100_000) {
        await dataSource.query(
          `
        INSERT INTO audit_events (at, actor, actor_kind, action, account, provider, outcome, count)
        SELECT timestamptz '2026-05-01' + (i * interval '2.6 seconds'),
               CASE WHEN i % 50 = 0 THEN 'ops' ELSE 'svc-' || (i % 20) END,
               CASE WHEN i % 50 = 0 THEN 'admin' ELSE 'service' END,
               CASE WHEN i % 50 = 0 THEN (ARRAY['connection.revoke','connections.get','connection.refresh'])[1 + (i / 50) % 3] ELSE 'token.read' END,
               'acct-' || (i % 50000),
               (ARRAY['copper','copernica','copyai'])[1 + i % 3],
               CASE WHEN i % 97 = 0 THEN 'not_granted' ELSE 'served' END,
               1 + i % 7
        FROM generate_series($1::int, $1::int + 99999) AS i`,
          [from],
        );
      }
      await dataSource.query('ANALYZE audit_events');
    }, 300_000);
    afterAll(async () => truncateAll(dataSource));

    /**
     * The work a page query does for `where`, as Postgres executes it: the plan's node types and
     * how many table and index pages it touched (work, not time: the same on a slow machine).
     */
    const pageWork = async (where: string, params: unknown[]): Promise<{ nodes: string[]; pages: number; rows: number }> => {
      const [row]: Array<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }> = await dataSource.query(
        `EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT * FROM audit_events ${where} ORDER BY at DESC, id DESC LIMIT 51`,
        params,
      );
      const top = row['QUERY PLAN'][0].Plan;
      const nodes: string[] = [];
      const walk = (node: PlanNode): void => {
        nodes.push(node['Node Type']);
        for (const child of node.Plans ?? []) walk(child);
      };
      walk(top);
      return { nodes, pages: top['Shared Hit Blocks'] + top['Shared Read Blocks'], rows: top['Actual Rows'] };
    };

    it.each([
      ['no filter', '', []],
      ['an account', 'WHERE account = $1', ['acct-4242']],
      ['an actor', 'WHERE actor = $1', ['ops']],
      ['a busy actor', 'WHERE actor = $1', ['svc-3']],
      ['a rare action', 'WHERE action = $1', ['connection.revoke']],
      ['a provider', 'WHERE provider = $1', ['copernica']],
      ['an actor after a cursor', 'WHERE actor = $1 AND (at, id) < ($2::timestamptz, $3::bigint)', ['svc-3', '2026-05-20T00:00:00Z', '1']],
      ['an account over a time range', 'WHERE account = $1 AND at >= $2 AND at < $3', ['acct-7', '2026-05-02', '2026-05-20']],
      ['an actor and an action over a time range', 'WHERE actor = $1 AND action = $2 AND at >= $3', ['ops', 'connections.get', '2026-05-10']],
    ])('finds a page by %s through an index, touching a few hundred pages at most', async (_what, where, params) => {
      const work = await pageWork(where, params);
      expect(work.nodes).not.toContain('Seq Scan');
      expect(work.rows).toBeGreaterThan(0);
      // The table holds about 20,000 pages; a page of 51 records is found in a few dozen.
      expect(work.pages).toBeLessThan(500);
    });

    it('answers each filter with the newest page', async () => {
      const page = await repository.list({ account: 'acct-4242' }, null, 5);
      expect(page.items).toHaveLength(5);
      expect(page.items.every((r) => r.account === 'acct-4242')).toBe(true);
      const next = await repository.list({ account: 'acct-4242' }, page.nextCursor, 5);
      expect(next.items[0].at.getTime()).toBeLessThan(page.items[4].at.getTime());
    });
  });

  async function collect(filter: Parameters<PostgresAuditRepository['list']>[0], pageSize: number): Promise<AuditRecord[]> {
    const seen: AuditRecord[] = [];
    let cursor: string | null = null;
    do {
      const page = await repository.list(filter, cursor, pageSize);
      seen.push(...page.items);
      cursor = page.nextCursor;
    } while (cursor);
    return seen;
  }
});

interface PlanNode {
  'Node Type': string;
  'Shared Hit Blocks': number;
  'Shared Read Blocks': number;
  'Actual Rows': number;
  Plans?: PlanNode[];
}
