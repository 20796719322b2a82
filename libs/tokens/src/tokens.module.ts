import { ConnectionsModule } from '@app/connections';
import { RefreshModule } from '@app/refresh';
import { Module } from '@nestjs/common';
import { ConnectionCache } from './connection-cache';
import { TokenService } from './token.service';
import { UsageRecorder } from './usage-recorder';

/** The token read path (GET /tokens/:account): cache, refresh on demand, usage batching. */
@Module({
  imports: [ConnectionsModule, RefreshModule],
  providers: [ConnectionCache, TokenService, UsageRecorder],
  exports: [TokenService, ConnectionCache],
})
export class TokensModule {}
