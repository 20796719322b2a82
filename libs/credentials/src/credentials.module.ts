import { ConnectionsModule } from '@app/connections';
import { ProvidersModule } from '@app/providers';
import { RevocationModule } from '@app/revocation';
import { TokensModule } from '@app/tokens';
import { Module } from '@nestjs/common';
import { StaticCredentialService } from './static-credential.service';

/**
 * Static credentials (API keys): checked with the provider, then stored sealed in place of any
 * OAuth grant (revoked at the provider first). Used by the admin route and the end user's connect
 * form; it never decides who may store one (that is the caller's job).
 */
@Module({
  imports: [ConnectionsModule, ProvidersModule, RevocationModule, TokensModule],
  providers: [StaticCredentialService],
  exports: [StaticCredentialService],
})
export class CredentialsModule {}
