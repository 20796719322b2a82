import { ManualClock } from '@app/common';
import { dataSourceOptions } from '@app/database';
import { AuditLog, AuditRecord, Metrics } from '@app/observability';
import { DataSource } from 'typeorm';
import { TcpProxy } from '../../../test/support/tcp-proxy';
import { openTestDataSource, testDatabaseUrl, truncateAll } from '../../../test/support/test-database';
import { AUDIT_BATCH_SIZE, AuditWriter, MAX_BUFFERED_AUDIT_RECORDS } from './audit-writer';
import { PostgresAuditRepository } from './postgres-audit.repository';
import { TokenReadAudit } from './token-read-audit';

const T0 = Date.UTC(2026, 5, 1, 12, 0, 5);

/** The real repository, counting its INSERT statements. */
class CountingRepository extends PostgresAuditRepository {
  inserts = 0;
  override async insert(records: ReadonlyArray<AuditRecord>): Promise<void> {
    this.inserts++;
    return super.insert(records);
  }
}

describe('AuditWriter (real Postgres, through a proxy that can cut it off)', () => {
  let db: DataSource;
  let proxy: TcpProxy;
  let brokerSide: DataSource;
  let clock: ManualClock;
  let metrics: Metrics;
  let audit: AuditLog;
  let reads: TokenReadAudit;
  let repository: CountingRepository;
  let writer: AuditWriter;

  beforeAll(async () => {
    db = await openTestDataSource();
    const proxied = await TcpProxy.forDatabase(testDatabaseUrl());
    proxy = proxied.proxy;
    brokerSide = await new DataSource(dataSourceOptions(proxied.url, { poolSize: 2 })).initialize();
  });
  afterAll(async () => {
    proxy.restore();
    await brokerSide?.destroy();
    await proxy?.close();
    await db?.destroy();
  });
  beforeEach(async () => {
    proxy.restore();
    await truncateAll(db);
    clock = new ManualClock(T0);
    metrics = new Metrics();
    audit = new AuditLog(clock);
    reads = new TokenReadAudit(clock, metrics);
    repository = new CountingRepository(brokerSide);
    writer = new AuditWriter(audit, repository, reads, metrics);
  });

  const stored = async (): Promise<Array<Record<string, unknown>>> =>
    db.query(`SELECT action, actor, account, provider, outcome, count, at FROM audit_events ORDER BY id`);
  const metric = async (name: string): Promise<number> => {
    const text = await metrics.registry.getSingleMetricAsString(name);
    return Number(/ (\d+(\.\d+)?)$/m.exec(text)?.[1] ?? NaN);
  };
  const revoke = (account: string) =>
    audit.record({ action: 'connection.revoke', actor: 'ops', actorKind: 'admin', account, provider: 'copyai', outcome: 'revoked', requestId: `req-${account}` });

  it('writes single events and the reads counted so far in one INSERT per flush, nothing on the way in', async () => {
    revoke('acme');
    revoke('globex');
    for (let i = 0; i < 5; i++) reads.count('billing', 'acme', 'copyai', 'served');
    reads.count('crm', 'acme', null, 'not_granted');
    expect(repository.inserts).toBe(0);
    expect(await stored()).toEqual([]);

    await writer.flush();

    expect(repository.inserts).toBe(1);
    const rows = await stored();
    expect(rows.map(({ action, actor, account, outcome, count }) => ({ action, actor, account, outcome, count }))).toEqual<unknown[]>([
      { action: 'connection.revoke', actor: 'ops', account: 'acme', outcome: 'revoked', count: 1 },
      { action: 'connection.revoke', actor: 'ops', account: 'globex', outcome: 'revoked', count: 1 },
      expect.objectContaining({ action: 'token.read' }),
      expect.objectContaining({ action: 'token.read' }),
    ]);
    expect(rows.slice(2).map(({ actor, account, outcome, count }) => ({ actor, account, outcome, count }))).toEqual(
      expect.arrayContaining([
        { actor: 'billing', account: 'acme', outcome: 'served', count: 5 },
        { actor: 'crm', account: 'acme', outcome: 'not_granted', count: 1 },
      ]),
    );
    expect(await metric('token_broker_audit_records_written_total')).toBe(4);
    expect(await metric('token_broker_audit_buffer_records')).toBe(0);
  });

  it('adds later reads of the same minute to the stored row, and starts a new row each minute', async () => {
    reads.count('billing', 'acme', 'copyai', 'served');
    await writer.flush();
    reads.count('billing', 'acme', 'copyai', 'served');
    reads.count('billing', 'acme', 'copyai', 'served');
    await writer.flush();
    clock.advance(60_000);
    reads.count('billing', 'acme', 'copyai', 'served');
    await writer.flush();
    expect((await stored()).map((r) => [(r.at as Date).toISOString(), r.count])).toEqual([
      ['2026-06-01T12:00:00.000Z', 3],
      ['2026-06-01T12:01:00.000Z', 1],
    ]);
  });

  it('splits a large backlog into statements of AUDIT_BATCH_SIZE records', async () => {
    for (let i = 0; i < AUDIT_BATCH_SIZE + 10; i++) revoke(`acct-${i}`);
    await writer.flush();
    expect(repository.inserts).toBe(2);
    expect(await stored()).toHaveLength(AUDIT_BATCH_SIZE + 10);
  });

  it('keeps everything while the database cannot be reached, merging reads, and writes it all once it is back', async () => {
    proxy.cutAll();
    revoke('acme');
    reads.count('billing', 'acme', 'copyai', 'served');
    await writer.flush();
    reads.count('billing', 'acme', 'copyai', 'served');
    revoke('globex');
    await writer.flush();
    expect(writer.buffered()).toBe(3);
    expect(await metric('token_broker_audit_buffer_records')).toBe(3);
    expect(await metric('token_broker_audit_records_dropped_total')).toBe(0);

    proxy.restore();
    await writer.flush();
    const rows = await stored();
    expect(rows.map((r) => [r.action, r.account, r.count])).toEqual([
      ['connection.revoke', 'acme', 1],
      ['connection.revoke', 'globex', 1],
      ['token.read', 'acme', 2],
    ]);
    expect(writer.buffered()).toBe(0);
  });

  it('keeps at most MAX_BUFFERED_AUDIT_RECORDS, counting and warning about what it drops', async () => {
    proxy.cutAll();
    const warnings: string[] = [];
    const logger = (writer as unknown as { logger: { warn: (message: string) => void } }).logger;
    const warn = logger.warn.bind(logger);
    logger.warn = (message: string) => {
      warnings.push(message);
      warn(message);
    };
    for (let i = 0; i < MAX_BUFFERED_AUDIT_RECORDS + 5; i++) {
      audit.record({ action: 'connections.list', actor: 'ops', actorKind: 'admin', outcome: 'ok' });
    }
    await writer.flush();
    expect(writer.buffered()).toBe(MAX_BUFFERED_AUDIT_RECORDS);
    expect(await metric('token_broker_audit_records_dropped_total')).toBe(5);
    expect(warnings).toEqual(expect.arrayContaining([expect.stringMatching(/^audit records dropped since the last warning: 5;/)]));
  });

  it('writes what is pending when the application shuts down', async () => {
    revoke('acme');
    reads.count('billing', 'acme', 'copyai', 'served');
    await writer.onApplicationShutdown();
    expect(await stored()).toHaveLength(2);
  });
});
