import { ConnectionsModule } from '@app/connections';
import { ProvidersModule } from '@app/providers';
import { TokensModule } from '@app/tokens';
import { Module } from '@nestjs/common';
import { ConnectionRevoker } from './connection-revoker';

/**
 * Revoking a connection: at the provider where it has an endpoint (RFC 7009), then erased
 * locally, fenced by the row version. Used by the admin routes, one connection or a whole
 * provider's; it never decides who may revoke (that is the caller's job).
 */
@Module({
  imports: [ConnectionsModule, ProvidersModule, TokensModule],
  providers: [ConnectionRevoker],
  exports: [ConnectionRevoker],
})
export class RevocationModule {}
