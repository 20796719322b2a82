import { Clock } from '@app/common';
import { AuditRecord, clipAuditTarget, Metrics } from '@app/observability';
import { Injectable } from '@nestjs/common';

/** One (service, provider, outcome) count of an account, chained to the account's other counts. */
interface ReadCount {
  readonly service: string;
  readonly provider: string | null;
  readonly outcome: string;
  count: number;
  next: ReadCount | undefined;
}

/** Accounts counted at once, at most: beyond, reads are dropped (and reported) until the next drain. */
export const MAX_COUNTED_ACCOUNTS = 50_000;
const MINUTE_MS = 60_000;


/**
 * Token reads for the audit trail, aggregated per minute, service, account, provider and outcome
 * (DESIGN, "Audit trail"): the read path only counts here, in memory, and AuditWriter drains the
 * counts every few seconds into the audit table, where rows of the same minute add up.
 *
 * Counting is on the hot path of every GET /tokens, so it builds no string and makes no promise:
 * one map lookup by account and a walk of that account's few counts, compared by identity on
 * strings from small sets (the caller's key name, a registry provider id, an outcome code). The
 * counts of an account read again and again stay allocated (a drain zeroes them), so a steady
 * read rate allocates nothing here; an account read once is forgotten at the drain; a new minute
 * starts an empty table. At most MAX_COUNTED_ACCOUNTS accounts are counted at once.
 */
@Injectable()
export class TokenReadAudit {
  private counts = new Map<string, ReadCount>();
  private minuteStartMs: number;
  private minuteEndMs: number;
  /** Earlier minutes not drained yet. */
  private closed: Array<{ minuteStartMs: number; counts: Map<string, ReadCount> }> = [];
  private dropped = 0;

  constructor(
    private readonly clock: Clock,
    private readonly metrics: Metrics,
  ) {
    this.minuteStartMs = minuteOf(clock.nowMs());
    this.minuteEndMs = this.minuteStartMs + MINUTE_MS;
  }

  /** Counts one answer of GET /tokens: `service` is the caller's key name, `provider` null when the read named none and none was chosen. */
  count(service: string, account: string, provider: string | null, outcome: string): void {
    const now = this.clock.nowMs();
    if (now >= this.minuteEndMs) this.startMinute(now);
    const first = this.counts.get(account);
    for (let cell = first; cell !== undefined; cell = cell.next) {
      if (cell.outcome === outcome && cell.provider === provider && cell.service === service) {
        cell.count++;
        return;
      }
    }
    if (first === undefined && this.counts.size >= MAX_COUNTED_ACCOUNTS) {
      this.dropped++;
      return;
    }
    this.counts.set(account, { service, provider, outcome, count: 1, next: first });
  }

  /**
   * Starts handing on the reads counted so far, as `token.read` records a batch at a time (see
   * ReadDrain): only one batch of records exists at once, however many accounts were read.
   */
  drain(): ReadDrain {
    const closed = this.closed;
    this.closed = [];
    const dropped = this.dropped;
    this.dropped = 0;
    return new ReadDrain([...closed.map((minute) => ({ ...minute, keep: false })), { minuteStartMs: this.minuteStartMs, counts: this.counts, keep: true }], dropped, this.metrics);
  }

  private startMinute(now: number): void {
    if (this.counts.size > 0) this.closed.push({ minuteStartMs: this.minuteStartMs, counts: this.counts });
    this.counts = new Map();
    this.minuteStartMs = minuteOf(now);
    this.minuteEndMs = this.minuteStartMs + MINUTE_MS;
  }
}

function minuteOf(ms: number): number {
  return ms - (ms % MINUTE_MS);
}

/**
 * One drain of TokenReadAudit: each `next` hands on up to `max` counts as records and zeroes
 * them, walking the closed minutes and then the current one, whose counts it keeps (zeroed) when
 * they were read more than once since the last drain and drops otherwise: a sweep over many
 * accounts read once each holds no count longer than a drain interval. Reads counted meanwhile
 * either land in a count not handed on yet (and go with this drain) or in one already zeroed (and
 * go with the next): none is lost or handed on twice. Counts go to the per-service read metric as
 * they are handed on.
 */
export class ReadDrain {
  private index = 0;
  private entries?: Iterator<[string, ReadCount]>;
  /** The minute the current records belong to, one Date shared by its rows (records are never changed). */
  private at = new Date(0);
  /** Reads handed on by the current `next`, by service and outcome, for the metric. */
  private readonly counted = new Map<string, Map<string, number>>();

  constructor(
    private readonly minutes: ReadonlyArray<{ minuteStartMs: number; counts: Map<string, ReadCount>; keep: boolean }>,
    /** Reads that could not be counted since the last drain (too many accounts at once). */
    readonly dropped: number,
    private readonly metrics: Metrics,
  ) {}

  /** Up to `max` records; an empty array once everything is handed on. */
  next(max: number): AuditRecord[] {
    const records: AuditRecord[] = [];
    this.counted.clear();
    while (records.length < max && this.index < this.minutes.length) {
      const minute = this.minutes[this.index];
      if (this.entries === undefined) {
        this.entries = minute.counts.entries();
        this.at = new Date(minute.minuteStartMs);
      }
      const entry = this.entries.next();
      if (entry.done) {
        this.entries = undefined;
        this.index++;
        continue;
      }
      const [account, first] = entry.value;
      let kept: ReadCount | undefined;
      let cell: ReadCount | undefined = first;
      while (cell !== undefined) {
        const next: ReadCount | undefined = cell.next;
        if (cell.count > 0) records.push(this.record(account, cell));
        // Kept (zeroed) only when read more than once since the last drain: likely read again soon.
        if (cell.count > 1) {
          cell.next = kept;
          kept = cell;
        }
        cell.count = 0;
        cell = next;
      }
      if (!minute.keep) continue;
      if (kept === undefined) minute.counts.delete(account);
      else if (kept !== first) minute.counts.set(account, kept);
    }
    for (const [service, outcomes] of this.counted) {
      for (const [outcome, count] of outcomes) this.metrics.tokenReadsByService.inc({ service, outcome }, count);
    }
    return records;
  }

  private record(account: string, cell: ReadCount): AuditRecord {
    let outcomes = this.counted.get(cell.service);
    if (outcomes === undefined) this.counted.set(cell.service, (outcomes = new Map<string, number>()));
    outcomes.set(cell.outcome, (outcomes.get(cell.outcome) ?? 0) + cell.count);
    return {
      at: this.at,
      action: 'token.read',
      actor: cell.service,
      actorKind: 'service',
      // A refused read's account is whatever the caller sent (up to the path's length limit).
      account: clipAuditTarget(account),
      provider: clipAuditTarget(cell.provider),
      outcome: cell.outcome,
      count: cell.count,
    };
  }
}
