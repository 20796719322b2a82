import { Clock } from '@app/common';
import { AppConfig } from '@app/config';
import { Injectable, Logger } from '@nestjs/common';
import { AuditRepository } from './audit.repository';

/** Records deleted per statement: short transactions that never hold many row locks. */
export const AUDIT_PRUNE_BATCH = 5_000;
const DAY_MS = 24 * 60 * 60 * 1000;

/**
 * Keeps the audit table to AUDIT_RETENTION_DAYS: deletes older records in batches, oldest first,
 * until none is left. Run by the broker's scheduler on every replica; replicas pruning at once
 * only share the work.
 */
@Injectable()
export class AuditRetention {
  private readonly logger = new Logger('AuditRetention');

  constructor(
    private readonly config: AppConfig,
    private readonly repository: AuditRepository,
    private readonly clock: Clock,
  ) {}

  /** Deletes every record older than the retention; how many went. */
  async prune(): Promise<number> {
    const cutoff = new Date(this.clock.nowMs() - this.config.auditRetentionDays * DAY_MS);
    let total = 0;
    for (;;) {
      const deleted = await this.repository.deleteOlderThan(cutoff, AUDIT_PRUNE_BATCH);
      total += deleted;
      if (deleted < AUDIT_PRUNE_BATCH) break;
    }
    if (total > 0) this.logger.log(`pruned ${total} audit record(s) older than ${this.config.auditRetentionDays} days`);
    return total;
  }
}
