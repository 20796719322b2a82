import { Module } from '@nestjs/common';
import { AuditRetention } from './audit-retention';
import { AuditWriter } from './audit-writer';
import { AuditRepository } from './audit.repository';
import { PostgresAuditRepository } from './postgres-audit.repository';
import { TokenReadAudit } from './token-read-audit';

/**
 * The durable audit trail: the audit table (AuditRepository), its batched writer (attached to
 * AuditLog, which every feature records through), the read path's per-minute counts
 * (TokenReadAudit) and retention (AuditRetention). Not global on purpose: Nest shuts global
 * modules down last, and the writer's final flush must run while the database module still
 * holds its connections.
 */
@Module({
  providers: [AuditWriter, TokenReadAudit, AuditRetention, { provide: AuditRepository, useClass: PostgresAuditRepository }],
  exports: [TokenReadAudit, AuditRetention, AuditRepository, AuditWriter],
})
export class AuditModule {}
