import { Clock } from '@app/common';
import { ConnectionRepository } from '@app/connections';
import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';

const FLUSH_INTERVAL_MS = 10_000;

/**
 * Remembers when each connection was last read and writes the batch every few seconds in one
 * statement: the read path itself never writes (the equivalent Nango path commits a write per read).
 */
@Injectable()
export class UsageRecorder implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('UsageRecorder');
  private pending = new Map<string, Date>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly connections: ConnectionRepository,
    private readonly clock: Clock,
  ) {}

  onModuleInit(): void {
    this.timer = setInterval(() => void this.flush(), FLUSH_INTERVAL_MS);
    this.timer.unref();
  }

  async onApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }

  used(connectionId: string): void {
    this.pending.set(connectionId, this.clock.now());
  }

  async flush(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      await this.connections.recordUsage(batch);
    } catch (error) {
      // Losing a last-used timestamp is harmless; keep the newest for the next flush.
      for (const [id, at] of batch) if (!this.pending.has(id)) this.pending.set(id, at);
      this.logger.warn(`could not record token usage: ${(error as Error).message}`);
    }
  }
}
