import { Clock } from '@app/common';
import { AppConfig } from '@app/config';
import { ConnectionRecord } from '@app/connections';
import { AuditLog } from '@app/observability';
import { PROVIDER_IDS, ProviderId } from '@app/providers';
import { Injectable, Logger, Optional } from '@nestjs/common';
import { auditSystemRefresh } from './refresh-audit';
import { RefreshEngine } from './refresh-engine';
import { Lease, RefreshLeases } from './refresh-leases';
import { RefreshOutcome } from './refresh-outcome';
import { TokenBucket } from './token-bucket';

export interface SweepReport {
  claimed: number;
  outcomes: Partial<Record<RefreshOutcome['kind'], number>>;
  elapsedMs: number;
}

const IDLE_WAIT_MS = 50;

/**
 * Proactive refresh (DESIGN guarantee 4): repeatedly claims connections whose planned refresh
 * time has come (a lease in the row, so replicas share the work without overlap) and refreshes
 * them through RefreshEngine, with at most `concurrency` calls in flight and `budget` calls a
 * minute per provider. One sweep runs until nothing is due; claims are topped up as calls
 * finish, so a backlog flows through without waiting for whole batches.
 */
@Injectable()
export class RefreshSweeper {
  private readonly logger = new Logger('RefreshSweep');
  private readonly budgets = new Map<string, TokenBucket>();
  private running?: Promise<SweepReport>;
  private stopping = false;

  constructor(
    private readonly config: AppConfig,
    private readonly leases: RefreshLeases,
    private readonly engine: RefreshEngine,
    private readonly clock: Clock,
    // Optional so that a sweeper built by hand below Nest (the service-tier specs) needs no audit trail.
    @Optional() private readonly audit?: AuditLog,
  ) {}

  /** Runs a sweep, or joins the one already running. */
  sweep(): Promise<SweepReport> {
    if (this.stopping) return Promise.resolve({ claimed: 0, outcomes: {}, elapsedMs: 0 });
    this.running ??= this.run().finally(() => (this.running = undefined));
    return this.running;
  }

  /** Stops claiming, lets calls in flight finish (the sweep's and any other), and gives back every lease still held. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.running?.catch(() => undefined);
    await this.engine.settled();
    const released = await this.leases.releaseAll().catch(() => 0);
    if (released > 0) this.logger.log(`released ${released} refresh leases on shutdown`);
  }

  private async run(): Promise<SweepReport> {
    const started = this.clock.nowMs();
    const report: SweepReport = { claimed: 0, outcomes: {}, elapsedMs: 0 };
    // Every provider, OAuth client configured or not: an API key's expiry is flagged by the sweep too.
    await Promise.all(PROVIDER_IDS.map((provider) => this.sweepProvider(provider, report)));
    report.elapsedMs = this.clock.nowMs() - started;
    if (report.claimed > 0) {
      this.logger.log(`sweep refreshed ${report.outcomes.refreshed ?? 0} of ${report.claimed} due connections in ${report.elapsedMs} ms`);
    }
    return report;
  }

  /**
   * Keeps up to `concurrency` provider calls in flight for one provider. A refresh gives its slot
   * back as soon as the provider has answered, while its row is written (at most as many writes
   * again may be pending). The next claim runs in the background meanwhile, so a free slot is
   * refilled at once instead of waiting for a claim round trip. Claims stop when one comes back
   * short (nothing more is due) or the budget is spent, and resume when it refills.
   */
  private async sweepProvider(provider: ProviderId, report: SweepReport): Promise<void> {
    const { concurrency, batchSize } = this.config.refresh;
    const budget = this.budget(provider);
    const tasks = new Set<Promise<void>>();
    let calls = 0;
    let claiming: Promise<void> | undefined;
    let exhausted = false;
    let wake = (): void => undefined;
    const changed = (): Promise<void> => new Promise((resolve) => (wake = resolve));

    // The claimed rows wait as RefreshLeases' held claims (a read may take one over): nothing is queued here.
    const claimMore = (): void => {
      const held = this.leases.heldCount(provider);
      if (claiming || exhausted || this.stopping || held >= concurrency) return;
      const allowed = budget.take(Math.min(batchSize, concurrency * 2 - held));
      if (allowed === 0) return;
      claiming = this.leases
        .claimDue(provider, allowed)
        .then(
          (claimed) => {
            budget.giveBack(allowed - claimed);
            report.claimed += claimed;
            if (claimed < allowed) exhausted = true;
          },
          (error: Error) => {
            budget.giveBack(allowed);
            exhausted = true; // the next sweep tries again
            this.logger.warn(`could not claim due ${provider} connections: ${error.message}`);
          },
        )
        .finally(() => (claiming = undefined));
    };
    const start = (claim: { id: string; lease: Lease | undefined }): void => {
      calls++;
      let answered = false;
      const giveBackSlot = (): void => {
        if (answered) return;
        answered = true;
        calls--;
        wake();
      };
      const task = this.refreshOne(claim.id, claim.lease, report, giveBackSlot).finally(() => {
        giveBackSlot();
        tasks.delete(task);
        wake();
      });
      tasks.add(task);
    };

    for (;;) {
      claimMore();
      while (!this.stopping && calls < concurrency && tasks.size < concurrency * 2) {
        const next = this.leases.takeNext(provider);
        if (!next) break;
        start(next);
      }
      if (tasks.size === 0 && !claiming) {
        if (exhausted || this.stopping) break;
        // Budget spent: wait for it to refill rather than spin.
        await sleep(Math.max(IDLE_WAIT_MS, budget.msUntilNext()));
        continue;
      }
      await (claiming ? Promise.race([changed(), claiming]) : changed());
    }
    // Rows claimed but never started (stopping): hand them back at once.
    await this.leases.releaseHeld(provider);
  }

  private async refreshOne(connectionId: string, lease: Lease | undefined, report: SweepReport, onProviderAnswered: () => void): Promise<void> {
    // Either plan: the token's, or its derived token's (RefreshEngine takes the token's first).
    const due = (record: ConnectionRecord): boolean => {
      const nowMs = this.clock.nowMs();
      return (record.nextRefreshAt !== null && record.nextRefreshAt.getTime() <= nowMs) || (record.derivedRefreshAt !== null && record.derivedRefreshAt.getTime() <= nowMs);
    };
    try {
      const outcome = await this.engine.refresh({ connectionId, trigger: 'sweep', stillNeeded: due, claimed: true, lease, onProviderAnswered });
      report.outcomes[outcome.kind] = (report.outcomes[outcome.kind] ?? 0) + 1;
      const row = lease?.row.record;
      if (this.audit) auditSystemRefresh(this.audit, outcome, { connectionId, account: row?.account ?? null, provider: row?.provider ?? null }, 'sweep');
    } catch (error) {
      this.logger.error({ err: error }, `refresh of connection ${connectionId} failed unexpectedly`);
    }
  }

  private budget(provider: string): TokenBucket {
    let bucket = this.budgets.get(provider);
    if (!bucket) {
      bucket = new TokenBucket(this.config.refresh.providerBudgetPerMinute, this.clock);
      this.budgets.set(provider, bucket);
    }
    return bucket;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
