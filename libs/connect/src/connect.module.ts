import { ConnectionsModule } from '@app/connections';
import { ProvidersModule } from '@app/providers';
import { RefreshModule } from '@app/refresh';
import { Module } from '@nestjs/common';
import { ConnectFlowRepository, TypeormConnectFlowRepository } from './connect-flow.repository';
import { ConnectService } from './connect.service';

/** The OAuth connect flow (sessions, state, Passport strategies). HTTP routes live in the app. */
@Module({
  imports: [ConnectionsModule, ProvidersModule, RefreshModule],
  providers: [ConnectService, { provide: ConnectFlowRepository, useClass: TypeormConnectFlowRepository }],
  exports: [ConnectService],
})
export class ConnectModule {}
