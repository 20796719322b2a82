import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * The broker's Prometheus metrics. Labels are provider ids and outcome words only: never an
 * account, a token or anything a caller sent.
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
  });

  readonly connections = new Gauge({
    name: 'token_broker_connections',
    help: 'Stored connections by provider and status (sampled on scrape)',
    labelNames: ['provider', 'status'] as const,
    registers: [this.registry],
  });

  /** Label children by "provider outcome": the read path counts every request, and a child skips hashing the labels. */
  private readonly tokenReadCounters = new Map<string, { inc(): void }>();

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'token_broker_' });
  }

  /** Counts one GET /tokens answer. */
  tokenRead(provider: string, outcome: 'served' | 'revoked' | 'needs_reauth' | 'unavailable'): void {
    const key = `${provider} ${outcome}`;
    let counter = this.tokenReadCounters.get(key);
    if (!counter) {
      counter = this.tokenReads.labels({ provider, outcome });
      this.tokenReadCounters.set(key, counter);
    }
    counter.inc();
  }
}
