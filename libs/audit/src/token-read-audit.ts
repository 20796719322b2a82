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

/** What a drain hands on: the counted reads as `token.read` records of their minute. */
export interface DrainedReads {
  readonly records: AuditRecord[];
  /** Reads that could not be counted since the last drain (too many accounts at once). */
  readonly dropped: number;
}

/**
 * Token reads for the audit trail, aggregated per minute, service, account, provider and outcome
 * (DESIGN, "Audit trail"): the read path only counts here, in memory, and AuditWriter drains the
 * counts every few seconds into the audit table, where rows of the same minute add up.
 *
 * Counting is on the hot path of every GET /tokens, so it builds no string and makes no promise:
 * one map lookup by account and a walk of that account's few counts, compared by identity on
 * strings from small sets (the caller's key name, a registry provider id, an outcome code). An
 * account's counts stay allocated while it is read (a drain zeroes them, the next drain drops
 * those still at zero), so a steady read rate allocates nothing here; a new minute starts an
 * empty table. At most MAX_COUNTED_ACCOUNTS accounts are counted between drains.
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

  /** The reads counted since the last drain, as records; adds them to the per-service read metric. */
  drain(): DrainedReads {
    const records: AuditRecord[] = [];
    const byService = new Map<string, number>();
    const emit = (minuteStartMs: number, account: string, cell: ReadCount): void => {
      records.push({
        at: new Date(minuteStartMs),
        action: 'token.read',
        actor: cell.service,
        actorKind: 'service',
        // A refused read's account is whatever the caller sent (up to the path's length limit).
        account: clipAuditTarget(account),
        provider: clipAuditTarget(cell.provider),
        outcome: cell.outcome,
        count: cell.count,
      });
      const key = `${cell.service} ${cell.outcome}`;
      byService.set(key, (byService.get(key) ?? 0) + cell.count);
    };
    for (const minute of this.closed) {
      for (const [account, first] of minute.counts) {
        for (let cell: ReadCount | undefined = first; cell !== undefined; cell = cell.next) if (cell.count > 0) emit(minute.minuteStartMs, account, cell);
      }
    }
    this.closed = [];
    for (const [account, first] of this.counts) {
      // Keep the counts read since the last drain (zeroed), drop those that stayed idle.
      let kept: ReadCount | undefined;
      let cell: ReadCount | undefined = first;
      while (cell !== undefined) {
        const next: ReadCount | undefined = cell.next;
        if (cell.count > 0) {
          emit(this.minuteStartMs, account, cell);
          cell.count = 0;
          cell.next = kept;
          kept = cell;
        }
        cell = next;
      }
      if (kept === undefined) this.counts.delete(account);
      else if (kept !== first) this.counts.set(account, kept);
    }
    for (const [key, count] of byService) {
      const space = key.indexOf(' ');
      this.metrics.tokenReadsByService.inc({ service: key.slice(0, space), outcome: key.slice(space + 1) }, count);
    }
    const dropped = this.dropped;
    this.dropped = 0;
    return { records, dropped };
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
