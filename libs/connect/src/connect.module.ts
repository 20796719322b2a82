import { ConnectionsModule } from '@app/connections';
import { CredentialsModule } from '@app/credentials';
import { ProvidersModule } from '@app/providers';
import { RefreshModule } from '@app/refresh';
import { TokensModule } from '@app/tokens';
import { Module } from '@nestjs/common';
import { ConnectFlowRepository, TypeormConnectFlowRepository } from './connect-flow.repository';
import { ConnectService } from './connect.service';

/** The connect flow (sessions, OAuth state, Passport strategies, and the end user's API key form). HTTP routes live in the app. */
@Module({
  imports: [ConnectionsModule, CredentialsModule, ProvidersModule, RefreshModule, TokensModule],
  providers: [ConnectService, { provide: ConnectFlowRepository, useClass: TypeormConnectFlowRepository }],
  exports: [ConnectService],
})
export class ConnectModule {}
