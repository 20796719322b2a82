import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export type TokenReadOutcome = 'served' | 'revoked' | 'needs_reauth' | 'unavailable';

/**
 * The broker's Prometheus metrics. Labels are provider ids, outcome words and configured service
 * key names only: never an account, a token or anything a caller sent.
 */
@Injectable()
export class Metrics {
  readonly registry = new Registry();

  readonly refreshes = new Counter({
    name: 'token_broker_refresh_total',
    help: 'Token refresh attempts by provider, trigger (read, sweep, admin) and outcome',
    labelNames: ['provider', 'trigger', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly refreshDuration = new Histogram({
    name: 'token_broker_refresh_duration_seconds',
    help: 'Time spent calling the provider token endpoint for a refresh',
    labelNames: ['provider'] as const,
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  readonly tokenReads = new Counter({
    name: 'token_broker_token_reads_total',
    help: 'GET /tokens answers by provider and outcome',
    labelNames: ['provider', 'outcome'] as const,
    registers: [this.registry],
    // Counted in plain numbers by tokenRead() and added here when Prometheus scrapes.
    collect: () => this.flushTokenReads(),
  });

  readonly tokenReadsByService = new Counter({
    name: 'token_broker_token_reads_by_service_total',
    help: 'GET /tokens answers by service key name and audit outcome (added as the read audit is flushed, every few seconds)',
    labelNames: ['service', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly auditRecordsWritten = new Counter({
    name: 'token_broker_audit_records_written_total',
    help: 'Audit records written to the audit table (an aggregated token-read row counts once per write)',
    registers: [this.registry],
  });

  readonly auditRecordsDropped = new Counter({
    name: 'token_broker_audit_records_dropped_total',
    help: 'Audit records given up because the in-memory buffer was full (the database unreachable for long)',
    registers: [this.registry],
  });

  readonly auditBuffered = new Gauge({
    name: 'token_broker_audit_buffer_records',
    help: 'Audit records waiting in memory to be written',
    registers: [this.registry],
  });

  readonly connections = new Gauge({
    name: 'token_broker_connections',
    help: 'Stored connections by provider and status (sampled on scrape)',
    labelNames: ['provider', 'status'] as const,
    registers: [this.registry],
  });

  readonly webhookDeliveries = new Counter({
    name: 'token_broker_webhook_deliveries_total',
    help: 'Webhook deliveries finished, by event type and result (delivered, given_up)',
    labelNames: ['type', 'result'] as const,
    registers: [this.registry],
  });

  readonly webhookAttempts = new Counter({
    name: 'token_broker_webhook_attempts_total',
    help: 'Webhook POSTs by result: delivered (2xx), refused (another status), no_answer (timeout, connection failed)',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });

  readonly webhookPending = new Gauge({
    name: 'token_broker_webhook_pending_deliveries',
    help: 'Webhook deliveries not delivered or given up yet, all replicas (sampled on scrape)',
    registers: [this.registry],
  });

  readonly webhookOldestPendingAge = new Gauge({
    name: 'token_broker_webhook_oldest_pending_age_seconds',
    help: 'How long the oldest pending webhook delivery has waited, all replicas (sampled on scrape); 0 when none waits',
    registers: [this.registry],
  });

  readonly readinessChanges = new Counter({
    name: 'token_broker_readiness_changes_total',
    help: 'Readiness answers that differ from the one before, by the state changed to (ready, not_ready); a replica that flaps counts up fast',
    labelNames: ['to'] as const,
    registers: [this.registry],
  });

  /**
   * GET /tokens answers not yet added to `tokenReads`, by provider. The read path counts every
   * request; a number incremented here keeps prom-client's label lookup off it, and the counts
   * reach `tokenReads` whenever the registry is read (each scrape).
   */
  private readonly pendingTokenReads = new Map<string, Record<TokenReadOutcome, number>>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'token_broker_' });
    // Both series exist from the start: increase() misses a counter's first step when its series appears with it.
    for (const to of ['ready', 'not_ready']) this.readinessChanges.inc({ to }, 0);
    for (const result of ['delivered', 'refused', 'no_answer']) this.webhookAttempts.inc({ result }, 0);
  }

  /** Counts one GET /tokens answer. */
  tokenRead(provider: string, outcome: TokenReadOutcome): void {
    let counts = this.pendingTokenReads.get(provider);
    if (counts === undefined) {
      counts = { served: 0, revoked: 0, needs_reauth: 0, unavailable: 0 };
      this.pendingTokenReads.set(provider, counts);
    }
    counts[outcome]++;
  }

  private flushTokenReads(): void {
    for (const [provider, counts] of this.pendingTokenReads) {
      for (const outcome of Object.keys(counts) as TokenReadOutcome[]) {
        if (counts[outcome] === 0) continue;
        this.tokenReads.inc({ provider, outcome }, counts[outcome]);
        counts[outcome] = 0;
      }
    }
  }
}
