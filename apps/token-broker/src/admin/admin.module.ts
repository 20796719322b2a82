import { AuditModule } from '@app/audit';
import { ConnectionsModule } from '@app/connections';
import { CredentialsModule } from '@app/credentials';
import { ProvidersModule } from '@app/providers';
import { RefreshModule } from '@app/refresh';
import { RevocationModule } from '@app/revocation';
import { TokensModule } from '@app/tokens';
import { WebhooksModule } from '@app/webhooks';
import { Module } from '@nestjs/common';
import { AdminController } from './admin.controller';
import { AdminService } from './admin.service';

/**
 * The /admin feature: list, inspect, revoke and refresh connections with an admin key.
 * It reuses the refresh engine (one refresh path for everyone) and the read path's cache
 * (to drop an account at once after its own writes); it never hands out a token. Every request
 * is audited, and the audit trail (GET /admin/audit) and webhook deliveries are read here too.
 */
@Module({
  imports: [AuditModule, ConnectionsModule, CredentialsModule, ProvidersModule, RefreshModule, RevocationModule, TokensModule, WebhooksModule],
  controllers: [AdminController],
  providers: [AdminService],
})
export class AdminModule {}
