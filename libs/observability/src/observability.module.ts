import { Global, Module } from '@nestjs/common';
import { AuditLog } from './audit-log';
import { Metrics } from './metrics';

/**
 * Metrics (prom-client) and the audit trail's entry point (AuditLog) for every feature. Logging is
 * set up with the HTTP adapter, see broker.ts; the durable audit table attaches itself to AuditLog
 * (libs/audit).
 */
@Global()
@Module({ providers: [Metrics, AuditLog], exports: [Metrics, AuditLog] })
export class ObservabilityModule {}
