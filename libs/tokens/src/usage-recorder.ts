import { ConnectionRepository } from '@app/connections';
import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { CachedConnection } from './cached-connection';

const FLUSH_INTERVAL_MS = 10_000;
/** last_used_at is kept to within this: a connection read all day is written twice a minute, not on every flush. */
export const USAGE_RESOLUTION_MS = 30_000;

/**
 * Remembers when each connection was last read and writes the batch every few seconds in one
 * statement: the read path itself never writes (the equivalent Nango path commits a write per
 * read). A connection whose last-used time was written less than USAGE_RESOLUTION_MS ago is not
 * queued again, so a hot set of 1,000 accounts costs about 33 row updates a second, not 100.
 */
@Injectable()
export class UsageRecorder implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('UsageRecorder');
  private pending = new Map<string, number>();
  private timer?: NodeJS.Timeout;

  constructor(private readonly connections: ConnectionRepository) {}

  onModuleInit(): void {
    this.timer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  used(connection: CachedConnection, nowMs: number): void {
    if (nowMs - connection.lastUsedMs < USAGE_RESOLUTION_MS) return;
    connection.lastUsedMs = nowMs;
    this.pending.set(connection.id, nowMs);
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      await this.connections.recordUsage(new Map([...batch].map(([id, at]) => [id, new Date(at)])));
    } catch (error) {
      // Losing a last-used timestamp is harmless; keep the newest for the next flush.
      for (const [id, at] of batch) if (!this.pending.has(id)) this.pending.set(id, at);
      this.logger.warn(`could not record token usage: ${(error as Error).message}`);
    }
  }
}
