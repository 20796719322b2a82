import { Module } from '@nestjs/common';
import { PostgresWebhookDeliveryRepository } from './postgres-webhook-delivery.repository';
import { WebhookDeliveryRepository } from './webhook-delivery.repository';
import { WebhookDispatcher } from './webhook-dispatcher';
import { WebhookSender } from './webhook-sender';

/**
 * Lifecycle events out to WEBHOOK_URLS: the deliveries table, the dispatcher that claims and
 * sends, and the signing sender. Events are recorded by libs/connections with the changes they
 * report; this module only delivers them.
 */
@Module({
  providers: [WebhookDispatcher, WebhookSender, { provide: WebhookDeliveryRepository, useClass: PostgresWebhookDeliveryRepository }],
  exports: [WebhookDispatcher, WebhookDeliveryRepository],
})
export class WebhooksModule {}
