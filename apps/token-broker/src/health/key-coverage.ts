import { KeyRotationRepository } from '@app/connections';
import { KEY_RING, KeyRing } from '@app/crypto';
import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';

/** How often the stored values' key ids are checked against the ring. */
const CHECK_INTERVAL_MS = 30_000;

/**
 * Whether the key ring can open everything the database holds (guarantee 11): readiness fails
 * while any sealed value names a key id the ring lacks, e.g. after an old key was dropped
 * before `npm run keys:rotate` finished. Checked at start-up and then every 30 s in the
 * background (a few index lookups, see KeyRotationRepository.keyIdsInUse), never per probe.
 * The missing ids go to the log, not to the public probe body.
 */
@Injectable()
export class KeyCoverage implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('KeyCoverage');
  private missing: readonly string[] = [];
  private checked = false;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly rotation: KeyRotationRepository,
    @Inject(KEY_RING) private readonly ring: KeyRing,
  ) {}

  async onModuleInit(): Promise<void> {
    await this.check();
    this.timer = setInterval(() => void this.check(), CHECK_INTERVAL_MS).unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
  }

  /** Key ids stored values are sealed under that the ring lacks, as of the last check; undefined before the first check succeeded. */
  missingKeyIds(): readonly string[] | undefined {
    return this.checked ? this.missing : undefined;
  }

  async check(): Promise<void> {
    let inUse: string[];
    try {
      inUse = await this.rotation.keyIdsInUse();
    } catch (error) {
      // The database check reports an unreachable database; keep the last answer meanwhile.
      this.logger.warn(`cannot list the key ids of stored values (${(error as Error).message})`);
      return;
    }
    const missing = inUse.filter((kid) => !this.ring.has(kid));
    if (missing.join() !== this.missing.join() || !this.checked) {
      if (missing.length > 0) {
        this.logger.error(
          `stored values are sealed under key id(s) ${missing.map((k) => `"${k}"`).join(', ')}, which TOKEN_ENCRYPTION_KEYS lacks: ` +
            'not ready until the key is back in the ring (then run npm run keys:rotate before dropping it again)',
        );
      } else if (this.missing.length > 0) {
        this.logger.log('every stored value opens with the key ring again');
      }
    }
    this.missing = missing;
    this.checked = true;
  }
}
