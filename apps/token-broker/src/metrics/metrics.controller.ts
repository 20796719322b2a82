import { Public } from '@app/auth';
import { ConnectionListRepository } from '@app/connections';
import { Metrics } from '@app/observability';
import { WebhookDeliveryRepository } from '@app/webhooks';
import { Controller, Get, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';

/**
 * Prometheus scrape endpoint. Public like the probes: labels are provider ids and outcome
 * words only, never an account, a token or a key.
 */
@ApiExcludeController()
@Controller('metrics')
@Public()
export class MetricsController {
  constructor(
    private readonly metrics: Metrics,
    private readonly overview: ConnectionListRepository,
    private readonly webhookDeliveries: WebhookDeliveryRepository,
  ) {}

  @Get()
  async scrape(@Res() reply: FastifyReply): Promise<void> {
    await Promise.all([this.sampleConnections(), this.sampleWebhookDeliveries()]);
    void reply.header('content-type', this.metrics.registry.contentType).send(await this.metrics.registry.metrics());
  }

  /** Connection counts by provider and status, read at scrape time (one grouped query). */
  private async sampleConnections(): Promise<void> {
    try {
      const rows = await this.overview.countByProviderAndStatus();
      this.metrics.connections.reset();
      for (const row of rows) this.metrics.connections.set({ provider: row.provider, status: row.status }, row.count);
    } catch {
      // The database being down is what /health/ready reports; the other metrics still scrape.
    }
  }

  /** Pending webhook deliveries and the oldest one's wait, across replicas (one indexed query). */
  private async sampleWebhookDeliveries(): Promise<void> {
    try {
      const { pending, oldestAgeSeconds } = await this.webhookDeliveries.pendingSummary();
      this.metrics.webhookPending.set(pending);
      this.metrics.webhookOldestPendingAge.set(oldestAgeSeconds);
    } catch {
      // As above.
    }
  }
}
