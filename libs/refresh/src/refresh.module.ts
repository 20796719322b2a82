import { ConnectionsModule } from '@app/connections';
import { ProvidersModule } from '@app/providers';
import { Module } from '@nestjs/common';
import { RefreshEngine } from './refresh-engine';
import { RefreshPlanner } from './refresh-planner';

/** Keeps tokens fresh: when to refresh (RefreshPlanner) and the one path that does it (RefreshEngine). */
@Module({
  imports: [ConnectionsModule, ProvidersModule],
  providers: [RefreshPlanner, RefreshEngine],
  exports: [RefreshPlanner, RefreshEngine],
})
export class RefreshModule {}
