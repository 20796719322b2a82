export * from './webhook-delivery.repository';
export * from './postgres-webhook-delivery.repository';
export * from './webhook-payload';
export * from './webhook-sender';
export * from './webhook-dispatcher';
export * from './webhooks.module';
