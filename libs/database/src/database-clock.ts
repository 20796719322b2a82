import { Clock } from '@app/common';
import { Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import { DataSource } from 'typeorm';

/** How often the offset to the database's clock is measured again. */
const SYNC_INTERVAL_MS = 30_000;
/** An offset past this is worth telling the operator about (the broker corrects it either way). */
const SKEW_WARNING_MS = 1_000;

/**
 * The broker's clock in production: the local clock corrected to the database's (DESIGN
 * guarantee 8). Replicas compare each other's lease expiries and due times; those are written
 * and read against this clock, so a replica whose own clock runs ahead cannot take a lease
 * another still holds, and one that runs behind does not leave due rows unclaimed.
 *
 * The offset is measured with one `SELECT clock_timestamp()` at start-up and every
 * SYNC_INTERVAL_MS, taking the middle of the round trip; `now()` itself costs no query. When a
 * measurement fails (database unreachable), the last offset stays.
 */
@Injectable()
export class DatabaseClock extends Clock implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('DatabaseClock');
  private offsetMs = 0;
  private timer?: NodeJS.Timeout;

  constructor(private readonly dataSource: DataSource) {
    super();
  }

  /** The local clock being corrected (overridden by tests that play a replica with a skewed clock). */
  protected localNowMs(): number {
    return Date.now();
  }

  override nowMs(): number {
    return this.localNowMs() + this.offsetMs;
  }

  /** Milliseconds the database's clock is ahead of the local one, as last measured. */
  get offset(): number {
    return this.offsetMs;
  }

  async onModuleInit(): Promise<void> {
    await this.sync().catch((error: Error) => this.logger.warn(`cannot read the database's clock yet (${error.message}); using the local clock until it can`));
    this.timer = setInterval(() => void this.sync().catch(() => undefined), SYNC_INTERVAL_MS).unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** Measures the offset to the database's clock once. */
  async sync(): Promise<void> {
    const sentAt = performance.now();
    const localAtSend = this.localNowMs();
    const rows: Array<{ ms: string }> = await this.dataSource.query(`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`);
    const roundTripMs = performance.now() - sentAt;
    const databaseMs = Number(rows[0].ms);
    const previous = this.offsetMs;
    this.offsetMs = Math.round(databaseMs - (localAtSend + roundTripMs / 2));
    if (Math.abs(this.offsetMs) > SKEW_WARNING_MS && Math.abs(this.offsetMs - previous) > SKEW_WARNING_MS) {
      this.logger.warn(`this replica's clock is ${(-this.offsetMs / 1000).toFixed(1)} s off the database's; the broker uses the database's`);
    }
  }
}
