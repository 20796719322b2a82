import { ManualClock } from '@app/common';
import { Metrics } from '@app/observability';
import { AuditRecord } from '@app/observability';
import { MAX_COUNTED_ACCOUNTS, TokenReadAudit } from './token-read-audit';

/** Everything a drain hands on, in batches of `batch`. */
function drainAll(reads: TokenReadAudit, batch = 1_000): { records: AuditRecord[]; dropped: number } {
  const drain = reads.drain();
  const records: AuditRecord[] = [];
  for (let next = drain.next(batch); next.length > 0; next = drain.next(batch)) records.push(...next);
  return { records, dropped: drain.dropped };
}

const T0 = Date.UTC(2026, 5, 1, 12, 0, 10);

describe('TokenReadAudit', () => {
  let clock: ManualClock;
  let metrics: Metrics;
  let reads: TokenReadAudit;
  beforeEach(() => {
    clock = new ManualClock(T0);
    metrics = new Metrics();
    reads = new TokenReadAudit(clock, metrics);
  });

  const rows = () =>
    drainAll(reads)
      .records.map(({ at, actor, account, provider, outcome, count, action, actorKind }) => ({ at: at.toISOString(), action, actor, actorKind, account, provider, outcome, count }))
      .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));

  it('aggregates reads per minute, service, account, provider and outcome', () => {
    for (let i = 0; i < 3; i++) reads.count('billing', 'acme', 'copyai', 'served');
    reads.count('billing', 'acme', null, 'not_granted');
    reads.count('crm', 'acme', 'copyai', 'served');
    reads.count('billing', 'globex', 'copper', 'served');
    const minute = '2026-06-01T12:00:00.000Z';
    const row = (actor: string, account: string, provider: string | null, outcome: string, count: number) => ({
      at: minute,
      action: 'token.read',
      actor,
      actorKind: 'service',
      account,
      provider,
      outcome,
      count,
    });
    expect(rows()).toEqual(
      [row('billing', 'acme', 'copyai', 'served', 3), row('billing', 'acme', null, 'not_granted', 1), row('crm', 'acme', 'copyai', 'served', 1), row('billing', 'globex', 'copper', 'served', 1)].sort(
        (a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)),
      ),
    );
  });

  it('hands each read on once: a drain starts the counts again', () => {
    reads.count('billing', 'acme', 'copyai', 'served');
    reads.count('billing', 'acme', 'copyai', 'served');
    expect(rows().map((r) => r.count)).toEqual([2]);
    expect(rows()).toEqual([]);
    reads.count('billing', 'acme', 'copyai', 'served');
    expect(rows().map((r) => r.count)).toEqual([1]);
  });

  it('hands a drain on in batches; reads counted meanwhile go with it or with the next drain, never lost or twice', () => {
    for (let i = 0; i < 10; i++) reads.count('billing', `acct-${i}`, 'copyai', 'served');
    const drain = reads.drain();
    const first = drain.next(4);
    expect(first).toHaveLength(4);
    // One account already handed on, one not yet, one new.
    reads.count('billing', first[0].account!, 'copyai', 'served');
    reads.count('billing', 'acct-9', 'copyai', 'served');
    reads.count('billing', 'newcomer', 'copyai', 'served');
    const rest: AuditRecord[] = [];
    for (let next = drain.next(4); next.length > 0; next = drain.next(4)) rest.push(...next);
    const later = drainAll(reads).records;
    const total = (records: AuditRecord[]) => records.reduce((sum, r) => sum + (r.count ?? 0), 0);
    expect(total(first) + total(rest) + total(later)).toBe(13);
    const counted = new Map<string, number>();
    for (const r of [...first, ...rest, ...later]) counted.set(r.account!, (counted.get(r.account!) ?? 0) + (r.count ?? 0));
    expect(counted.get(first[0].account!)).toBe(2);
    expect(counted.get('acct-9')).toBe(2);
    expect(counted.get('newcomer')).toBe(1);
  });

  it('keeps the counts of an account read more than once (zeroed, for the next reads), forgets one read once', () => {
    reads.count('billing', 'hot', 'copyai', 'served');
    reads.count('billing', 'hot', 'copyai', 'served');
    reads.count('billing', 'cold', 'copyai', 'served');
    drainAll(reads);
    const table = (reads as unknown as { counts: Map<string, unknown> }).counts;
    expect([...table.keys()]).toEqual(['hot']);
    // Idle through a whole drain: forgotten too.
    drainAll(reads);
    expect(table.size).toBe(0);
  });

  it('starts a new record when the minute changes, and hands on the closed minute too', () => {
    reads.count('billing', 'acme', 'copyai', 'served');
    clock.set(Date.UTC(2026, 5, 1, 12, 1, 0));
    reads.count('billing', 'acme', 'copyai', 'served');
    reads.count('billing', 'acme', 'copyai', 'served');
    expect(rows().map((r) => [r.at, r.count])).toEqual([
      ['2026-06-01T12:00:00.000Z', 1],
      ['2026-06-01T12:01:00.000Z', 2],
    ]);
  });

  it('counts at most MAX_COUNTED_ACCOUNTS accounts at once, and reports the reads it had no room for', () => {
    for (let i = 0; i < MAX_COUNTED_ACCOUNTS; i++) reads.count('billing', `acct-${i}`, 'copyai', 'served');
    reads.count('billing', 'one-too-many', 'copyai', 'served');
    reads.count('billing', 'acct-0', 'copyai', 'served');
    const drained = drainAll(reads);
    expect(drained.records).toHaveLength(MAX_COUNTED_ACCOUNTS);
    expect(drained.dropped).toBe(1);
    expect(drained.records.find((r) => r.account === 'acct-0')?.count).toBe(2);
    // Accounts read once are forgotten at the drain: there is room again.
    reads.count('billing', 'one-too-many', 'copyai', 'served');
    expect(drainAll(reads)).toEqual({ records: [expect.objectContaining({ account: 'one-too-many', count: 1 })], dropped: 0 });
  });

  it('keeps at most 128 characters of an account, as any audit record (a refused read names what the caller sent)', () => {
    reads.count('billing', 'x'.repeat(1000), null, 'invalid_account');
    expect(drainAll(reads).records[0].account).toBe(`${'x'.repeat(128)}…`);
  });

  it('adds what it hands on to the per-service read metric', async () => {
    reads.count('billing', 'acme', 'copyai', 'served');
    reads.count('billing', 'globex', 'copyai', 'served');
    reads.count('crm', 'acme', null, 'not_granted');
    drainAll(reads);
    const text = await metrics.registry.getSingleMetricAsString('token_broker_token_reads_by_service_total');
    expect(text).toContain('token_broker_token_reads_by_service_total{service="billing",outcome="served"} 2');
    expect(text).toContain('token_broker_token_reads_by_service_total{service="crm",outcome="not_granted"} 1');
  });
});
