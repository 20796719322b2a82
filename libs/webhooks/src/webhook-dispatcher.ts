import { webhookGivenUp } from '@app/audit';
import { newLeaseOwnerId } from '@app/common';
import { AppConfig, webhookRetryDelayMs } from '@app/config';
import { DatabaseNotifications, describeDatabaseError } from '@app/database';
import { AuditLog, Metrics } from '@app/observability';
import { Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { AttemptResult, ClaimedDelivery, WebhookDeliveryRepository } from './webhook-delivery.repository';
import { webhookBody } from './webhook-payload';
import { WEBHOOK_TIMEOUT_MS, WebhookSender } from './webhook-sender';

/** The NOTIFY channel lifecycle_events inserts wake dispatchers on (migration CreateLifecycleEvents). */
export const LIFECYCLE_EVENT_CHANNEL = 'lifecycle_event';
/** Deliveries in flight at once on this replica. */
export const MAX_DELIVERIES_IN_FLIGHT = 32;
/** Events turned into deliveries per dispatch step. */
const DISPATCH_BATCH = 500;
/** A claim outlives the attempt's timeout by this much before another replica may take it over. */
const LEASE_MARGIN_MS = 5_000;
const ERROR_LOG_EVERY_MS = 30_000;
const PRUNE_BATCH = 1_000;

/**
 * Delivers lifecycle events to WEBHOOK_URLS, at least once, from any replica. Woken by NOTIFY when
 * an event is recorded, and by BrokerScheduler every second (the fallback when a NOTIFY is
 * missed). Each pass turns new events into deliveries (`dispatchNew`) and claims due ones up to
 * MAX_DELIVERIES_IN_FLIGHT; every finished attempt starts another pass, so the next event of the
 * same connection goes out as soon as the one before is delivered (or given up).
 *
 * A 2xx is delivered; anything else, or no answer within WEBHOOK_TIMEOUT_MS, is retried after
 * webhookRetryDelayMs (Retry-After honoured), until WEBHOOK_MAX_ATTEMPTS: then the delivery is
 * `failed`, audited (webhook.given_up) and waits for POST /admin/webhook-deliveries/:id/retry.
 * A replica without WEBHOOK_URLS neither dispatches nor delivers: events wait for one that has them.
 */
@Injectable()
export class WebhookDispatcher implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('Webhooks');
  /** Written into every claim this replica takes. */
  readonly owner = newLeaseOwnerId();
  private readonly inFlight = new Set<Promise<void>>();
  private pass?: Promise<void>;
  private passAgain = false;
  /** An event may wait to be dispatched (a NOTIFY or the poll said so since the last dispatch). */
  private eventsWaiting = true;
  private stopped = false;
  private lastErrorLogMs = 0;

  constructor(
    private readonly config: AppConfig,
    private readonly deliveries: WebhookDeliveryRepository,
    private readonly sender: WebhookSender,
    private readonly notifications: DatabaseNotifications,
    private readonly metrics: Metrics,
    private readonly audit: AuditLog,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    await this.notifications.subscribe(LIFECYCLE_EVENT_CHANNEL, () => this.wake({ newEvents: true }));
    if (this.config.webhooks.urls.length > 0) this.logger.log(`delivering lifecycle events to ${this.config.webhooks.urls.length} endpoint(s)`);
    this.wake();
  }

  /** Stops claiming; attempts under way finish (each within WEBHOOK_TIMEOUT_MS) and are written. */
  async onApplicationShutdown(): Promise<void> {
    this.stopped = true;
    await this.pass;
    await Promise.allSettled([...this.inFlight]);
    await this.sender.close();
  }

  /**
   * Runs a pass now, or right after the one under way. `newEvents`: look for undispatched events
   * too (a NOTIFY, the poll); a pass after a finished attempt only claims.
   */
  wake(options: { newEvents: boolean } = { newEvents: true }): void {
    if (this.stopped) return;
    if (options.newEvents) this.eventsWaiting = true;
    if (this.pass) {
      this.passAgain = true;
      return;
    }
    this.pass = this.runPasses().finally(() => (this.pass = undefined));
  }

  private async runPasses(): Promise<void> {
    do {
      this.passAgain = false;
      try {
        await this.runPass();
      } catch (error) {
        this.logError(`webhook dispatch failed (${describeDatabaseError(error)}); the next pass tries again`);
      }
    } while (this.passAgain && !this.stopped);
  }

  private async runPass(): Promise<void> {
    const { urls } = this.config.webhooks;
    // A replica without WEBHOOK_URLS leaves events alone: replicas that have endpoints (during a
    // rolling change of the setting, say) must not find them dispatched to nobody.
    if (urls.length === 0 || this.stopped) return;
    if (this.eventsWaiting) {
      this.eventsWaiting = false;
      // 0 also when another replica holds the dispatch turn: it dispatches them, and every
      // replica hears the NOTIFY of events that come meanwhile.
      while ((await this.deliveries.dispatchNew(urls, DISPATCH_BATCH)) === DISPATCH_BATCH && !this.stopped);
    }
    const room = MAX_DELIVERIES_IN_FLIGHT - this.inFlight.size;
    if (room <= 0) return;
    const claimed = await this.deliveries.claimDue(this.owner, WEBHOOK_TIMEOUT_MS + LEASE_MARGIN_MS, room);
    for (const delivery of claimed) {
      const attempt: Promise<void> = this.attempt(delivery)
        .catch((error: unknown) => {
          // Not expected (the sender and the writes catch their own failures); the lease lapses and it is attempted again.
          this.logError(`webhook delivery ${delivery.id} failed unexpectedly: ${(error as Error).message}`);
        })
        .finally(() => {
          this.inFlight.delete(attempt);
          this.wake({ newEvents: false });
        });
      this.inFlight.add(attempt);
    }
  }

  private async attempt(delivery: ClaimedDelivery): Promise<void> {
    const { event } = delivery;
    let body: string;
    try {
      body = webhookBody(event);
    } catch (error) {
      // Not expected (the snapshot is the row's own columns); retrying cannot help, and a stuck
      // delivery would hold back every later event of its connection.
      await this.finish(delivery, { kind: 'given_up', status: null, error: `the payload could not be built: ${(error as Error).message}` });
      return;
    }
    // The signature's timestamp is wall time: receivers compare it with theirs (Standard Webhooks allows 5 min).
    const answer = await this.sender.send(delivery.endpoint, event.id, body, new Date());
    const ok = answer.status !== null && answer.status >= 200 && answer.status < 300;
    this.metrics.webhookAttempts.inc({ result: ok ? 'delivered' : answer.status === null ? 'no_answer' : 'refused' });
    const error = answer.error ?? `answered ${answer.status}`;
    const settings = this.config.webhooks;
    const result: AttemptResult = ok
      ? { kind: 'delivered', status: answer.status! }
      : delivery.attempt >= settings.maxAttempts
        ? { kind: 'given_up', status: answer.status, error }
        : {
            kind: 'retry',
            status: answer.status,
            error,
            delayMs: webhookRetryDelayMs(settings, delivery.attempt, Math.random(), answer.retryAfterMs),
          };
    await this.finish(delivery, result);
  }

  /** Writes an attempt's result under the lease; counts, logs and audits what ended. */
  private async finish(delivery: ClaimedDelivery, result: AttemptResult): Promise<void> {
    const { event } = delivery;
    let written: boolean;
    try {
      written = await this.deliveries.complete(delivery.id, this.owner, result);
    } catch (failure) {
      // The lease lapses and another pass (here or elsewhere) makes the attempt again: at least once.
      this.logError(`could not record webhook delivery ${delivery.id} (${describeDatabaseError(failure)}); it will be attempted again`);
      return;
    }
    if (!written) return;
    if (result.kind !== 'retry') this.metrics.webhookDeliveries.inc({ type: event.type, result: result.kind });
    if (result.kind === 'given_up') {
      this.logger.warn(`gave up webhook delivery ${delivery.id} (${event.type}) after ${delivery.attempt} attempts: ${result.error}`);
      this.audit.record(
        webhookGivenUp({
          deliveryId: delivery.id,
          webhookId: event.id,
          type: event.type,
          endpoint: delivery.endpoint,
          account: event.account,
          provider: event.provider,
          attempts: delivery.attempt,
          lastStatus: result.status,
        }),
      );
    }
  }

  /**
   * AUDIT_RETENTION_DAYS applies to lifecycle events too: older ones go, in batches, unless a
   * delivery of theirs is still pending. Returns how many went.
   */
  async prune(now: Date): Promise<number> {
    const before = new Date(now.getTime() - this.config.auditRetentionDays * 86_400_000);
    let total = 0;
    for (;;) {
      const deleted = await this.deliveries.pruneBefore(before, PRUNE_BATCH);
      total += deleted;
      if (deleted < PRUNE_BATCH || this.stopped) return total;
    }
  }

  private logError(message: string): void {
    const now = Date.now();
    if (now - this.lastErrorLogMs < ERROR_LOG_EVERY_MS) return;
    this.lastErrorLogMs = now;
    this.logger.warn(message);
  }
}
