import { AuditRetention } from '@app/audit';
import { Clock } from '@app/common';
import { AppConfig } from '@app/config';
import { ConnectService } from '@app/connect';
import { RefreshSweeper } from '@app/refresh';
import { WebhookDispatcher } from '@app/webhooks';
import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { Cron, CronExpression, SchedulerRegistry } from '@nestjs/schedule';

const SWEEP = 'refresh-sweep';
const WEBHOOK_POLL = 'webhook-poll';
/** How often dispatchers look for due deliveries without a NOTIFY (retries fall due; a NOTIFY may be missed). */
export const WEBHOOK_POLL_INTERVAL_MS = 1_000;

/**
 * Every timer the broker runs, in one place; each only delegates. Whether the refresh sweep
 * runs on this replica is configuration (REFRESH_SCHEDULER_ENABLED); every replica may run it,
 * since claims never overlap.
 */
@Injectable()
export class BrokerScheduler implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Scheduler');

  constructor(
    private readonly config: AppConfig,
    private readonly registry: SchedulerRegistry,
    private readonly sweeper: RefreshSweeper,
    private readonly connect: ConnectService,
    private readonly clock: Clock,
    private readonly auditRetention: AuditRetention,
    private readonly webhooks: WebhookDispatcher,
  ) {}

  onApplicationBootstrap(): void {
    this.registry.addInterval(WEBHOOK_POLL, setInterval(() => this.webhooks.wake(), WEBHOOK_POLL_INTERVAL_MS));
    if (!this.config.refresh.schedulerEnabled) {
      this.logger.log('proactive refresh sweep disabled on this replica (REFRESH_SCHEDULER_ENABLED=false)');
      return;
    }
    const timer = setInterval(() => void this.sweepRefreshes(), this.config.refresh.sweepIntervalMs);
    this.registry.addInterval(SWEEP, timer);
  }

  async onApplicationShutdown(): Promise<void> {
    if (this.registry.doesExist('interval', WEBHOOK_POLL)) this.registry.deleteInterval(WEBHOOK_POLL);
    if (this.registry.doesExist('interval', SWEEP)) this.registry.deleteInterval(SWEEP);
    await this.sweeper.stop();
  }

  async sweepRefreshes(): Promise<void> {
    try {
      await this.sweeper.sweep();
    } catch (error) {
      this.logger.error({ err: error }, 'refresh sweep failed; the next interval tries again');
    }
  }

  /** AUDIT_RETENTION_DAYS: older audit records go, in batches. */
  @Cron(CronExpression.EVERY_HOUR, { name: 'prune-audit' })
  async pruneAudit(): Promise<void> {
    try {
      await this.auditRetention.prune();
    } catch (error) {
      this.logger.warn(`could not prune old audit records: ${(error as Error).message}`);
    }
  }

  /** Lifecycle events older than AUDIT_RETENTION_DAYS go too, unless still being delivered. */
  @Cron(CronExpression.EVERY_HOUR, { name: 'prune-lifecycle-events' })
  async pruneLifecycleEvents(): Promise<void> {
    try {
      await this.webhooks.prune(this.clock.now());
    } catch (error) {
      this.logger.warn(`could not prune old lifecycle events: ${(error as Error).message}`);
    }
  }

  @Cron(CronExpression.EVERY_10_MINUTES, { name: 'purge-connect-flow' })
  async purgeConnectFlow(): Promise<void> {
    try {
      await this.connect.purgeExpired(this.clock.now());
    } catch (error) {
      this.logger.warn(`could not purge expired connect sessions: ${(error as Error).message}`);
    }
  }
}
