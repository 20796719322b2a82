import { ConnectionsModule } from '@app/connections';
import { ProvidersModule } from '@app/providers';
import { Module } from '@nestjs/common';
import { RefreshEngine } from './refresh-engine';
import { RefreshLeases } from './refresh-leases';
import { RefreshPlanner } from './refresh-planner';
import { RefreshSweeper } from './refresh-sweeper';

/** Keeps tokens fresh: when to refresh (RefreshPlanner) and the one path that does it (RefreshEngine). */
@Module({
  imports: [ConnectionsModule, ProvidersModule],
  providers: [RefreshPlanner, RefreshLeases, RefreshEngine, RefreshSweeper],
  exports: [RefreshPlanner, RefreshEngine, RefreshSweeper],
})
export class RefreshModule {}
