import { describeDatabaseError, isDatabaseUnavailable } from '@app/database';
import { AuditLog, AuditRecord, AuditSink, Metrics } from '@app/observability';
import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { AuditRepository } from './audit.repository';
import { ReadDrain, TokenReadAudit } from './token-read-audit';

/** How often pending records are written: with the statement's own time, a record is durable within 5 s. */
export const AUDIT_FLUSH_INTERVAL_MS = 3_000;
/** Records per INSERT statement. */
export const AUDIT_BATCH_SIZE = 2_000;
/** Records kept in memory at most while they cannot be written; beyond, new ones are dropped (counted, warned about). */
export const MAX_BUFFERED_AUDIT_RECORDS = 100_000;
/** Single events waiting that make a flush start before its interval. */
const EARLY_FLUSH_EVENTS = 500;
const DROP_WARNING_EVERY_MS = 10_000;

/**
 * Writes the audit trail into the audit table: the durable half of AuditLog (attached as its
 * sink) and of TokenReadAudit (drained on every flush). Nothing is written on a request's path:
 * records wait in memory and go in batches, one multi-row INSERT per AUDIT_BATCH_SIZE records,
 * every AUDIT_FLUSH_INTERVAL_MS (sooner when many single events wait), and once more when the
 * application shuts down (after the HTTP server has stopped taking requests).
 *
 * While the database cannot be reached the records stay in memory and are retried on every
 * flush; aggregated read rows of the same minute, service, account, provider and outcome merge,
 * so a long outage costs memory per distinct row, not per read. The buffer is bounded
 * (MAX_BUFFERED_AUDIT_RECORDS): what does not fit is dropped, counted in
 * token_broker_audit_records_dropped_total and said in a warning.
 */
@Injectable()
export class AuditWriter implements AuditSink, OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('AuditWriter');
  private events: AuditRecord[] = [];
  /** Aggregated token-read rows, by (minute, service, account, provider, outcome). */
  private readonly reads = new Map<string, AuditRecord & { count: number }>();
  /** Single events and read rows of the flush under way, not written yet. */
  private flushingEvents = 0;
  private flushingReads = 0;
  private timer?: NodeJS.Timeout;
  private flushing?: Promise<void>;
  private failing = false;
  /** Dropped since the last warning. */
  private dropped = { records: 0, reads: 0 };
  private lastDropWarningMs = 0;

  constructor(
    audit: AuditLog,
    private readonly repository: AuditRepository,
    private readonly tokenReads: TokenReadAudit,
    private readonly metrics: Metrics,
  ) {
    audit.attach(this);
  }

  onModuleInit(): void {
    this.timer = setInterval(() => void this.flush(), AUDIT_FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  /** Writes what is pending; a record that arrives meanwhile waits for the next flush. */
  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    await this.flush();
    const left = this.buffered();
    if (left > 0) this.logger.error(`${left} audit record(s) could not be written before shutdown and are lost`);
  }

  write(record: AuditRecord): void {
    if (this.buffered() >= MAX_BUFFERED_AUDIT_RECORDS) {
      this.drop(1);
      return;
    }
    this.events.push(record);
    if (this.events.length >= EARLY_FLUSH_EVENTS) void this.flush();
  }

  /** Writes every pending record (reads counted so far included); joins a flush already running. */
  flush(): Promise<void> {
    this.flushing ??= this.writePending().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  /** Records waiting in memory, those of the flush under way included. */
  buffered(): number {
    return this.events.length + this.reads.size + this.flushingEvents + this.flushingReads;
  }

  private async writePending(): Promise<void> {
    const drain = this.tokenReads.drain();
    // Reads the counter had no room for: each is a record's worth of what happened.
    if (drain.dropped > 0) this.drop(drain.dropped, drain.dropped);
    // Read rows are taken from the counter a batch at a time, so only one batch of them exists at
    // once. A drain's rows are distinct (one per minute and key); rows kept from a failed flush
    // must merge with them first, or one statement would name a row twice.
    let takeReads = (max: number): AuditRecord[] => drain.next(max);
    if (this.reads.size > 0) {
      this.keepRest(drain);
      const kept = [...this.reads.values()];
      this.reads.clear();
      let next = 0;
      this.flushingReads = kept.length;
      takeReads = (max) => {
        const batch = kept.slice(next, next + max);
        next += batch.length;
        this.flushingReads = kept.length - next;
        return batch;
      };
    }
    for (;;) {
      const events = this.events.splice(0, AUDIT_BATCH_SIZE);
      const reads = takeReads(AUDIT_BATCH_SIZE - events.length);
      if (events.length + reads.length === 0) break;
      const batch = reads.length === 0 ? events : events.concat(reads);
      // In memory until written: counted as waiting, and back in the buffer if the write fails.
      this.flushingEvents = events.length;
      try {
        await this.repository.insert(batch);
      } catch (error) {
        this.flushingEvents = 0;
        if (!isDatabaseUnavailable(error)) {
          // Not an outage: the same batch would fail again and hold up every record behind it.
          this.logger.error({ err: error }, `could not write ${batch.length} audit record(s); they are dropped`);
          this.drop(batch.length, countReads(reads));
          continue;
        }
        this.events = events.concat(this.events);
        for (const read of reads) this.addRead(read);
        for (let rest = takeReads(AUDIT_BATCH_SIZE); rest.length > 0; rest = takeReads(AUDIT_BATCH_SIZE)) for (const read of rest) this.addRead(read);
        if (!this.failing) {
          this.failing = true;
          this.logger.warn(`could not write ${batch.length} audit record(s); ${this.buffered()} kept in memory and retried: ${describeDatabaseError(error)}`);
        }
        break;
      }
      this.flushingEvents = 0;
      this.metrics.auditRecordsWritten.inc(batch.length);
      if (this.failing) {
        this.failing = false;
        this.logger.log('audit records are written again');
      }
    }
    this.flushingReads = 0;
    this.metrics.auditBuffered.set(this.buffered());
    this.reportDrops();
  }

  /** Moves what is left of a drain into the kept read rows (merging). */
  private keepRest(drain: ReadDrain): void {
    for (let rest = drain.next(AUDIT_BATCH_SIZE); rest.length > 0; rest = drain.next(AUDIT_BATCH_SIZE)) for (const read of rest) this.addRead(read);
  }

  /** Adds a read row to the pending ones, merging with the row of the same key (written or not, the table adds them up too). */
  private addRead(record: AuditRecord): void {
    const key = `${record.at.getTime()}\u0000${record.actor}\u0000${record.account ?? ''}\u0000${record.provider ?? '\u0001'}\u0000${record.outcome}`;
    const pending = this.reads.get(key);
    if (pending !== undefined) {
      pending.count += record.count ?? 1;
      return;
    }
    if (this.buffered() >= MAX_BUFFERED_AUDIT_RECORDS) {
      this.drop(1, record.count ?? 1);
      return;
    }
    this.reads.set(key, { ...record, count: record.count ?? 1 });
  }

  /** Counts records given up; `reads` says how many token reads they stood for. */
  private drop(records: number, reads = 0): void {
    this.metrics.auditRecordsDropped.inc(records);
    this.dropped.records += records;
    this.dropped.reads += reads;
  }

  /** A warning for what was dropped since the last one, at most every DROP_WARNING_EVERY_MS. */
  private reportDrops(): void {
    if (this.dropped.records === 0) return;
    const now = Date.now();
    if (now - this.lastDropWarningMs < DROP_WARNING_EVERY_MS) return;
    this.lastDropWarningMs = now;
    const reads = this.dropped.reads > 0 ? ` (token reads among them: ${this.dropped.reads})` : '';
    this.logger.warn(`audit records dropped since the last warning: ${this.dropped.records}${reads}; ${this.buffered()} waiting, at most ${MAX_BUFFERED_AUDIT_RECORDS} are kept`);
    this.dropped = { records: 0, reads: 0 };
  }
}

function countReads(records: ReadonlyArray<AuditRecord>): number {
  return records.reduce((sum, record) => sum + (record.count ?? 1), 0);
}
