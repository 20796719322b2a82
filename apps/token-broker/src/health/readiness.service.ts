import { KEY_RING, KeyRing, TokenCipher } from '@app/crypto';
import { pendingMigrations } from '@app/database';
import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { DataSource } from 'typeorm';
import { KeyCoverage } from './key-coverage';

const DATABASE_TIMEOUT_MS = 2_000;

/** The checks behind /health/ready: each answers quickly and says what is wrong, never a secret. */
@Injectable()
export class ReadinessChecks {
  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly dataSource: DataSource,
    private readonly cipher: TokenCipher,
    @Inject(KEY_RING) private readonly keyRing: KeyRing,
    private readonly coverage: KeyCoverage,
  ) {}

  /** One round trip proves the server answers and tells whether every migration is applied. */
  async database(): Promise<HealthIndicatorResult> {
    const check = this.indicators.check('database');
    try {
      const pending = await withTimeout(pendingMigrations(this.dataSource), DATABASE_TIMEOUT_MS);
      if (pending.length > 0) return check.down({ message: `migrations not applied: ${pending.join(', ')}` });
      return check.up();
    } catch (error) {
      return check.down({ message: `database unreachable: ${describe(error)}` });
    }
  }

  /** The active key seals and opens, and the ring holds every key the stored values were sealed under. */
  keys(): HealthIndicatorResult {
    const check = this.indicators.check('keyRing');
    try {
      const context = { connectionId: 'readiness-probe', field: 'access_token' as const };
      const ok = this.cipher.open(this.cipher.seal('probe', context), context) === 'probe';
      if (!ok) return check.down({ message: 'key ring round trip failed' });
      const missing = this.coverage.missingKeyIds();
      if (missing === undefined) return check.down({ message: 'stored key ids not checked yet' });
      // Which ids are missing is in the log; the public body only says that some are.
      if (missing.length > 0) return check.down({ message: 'stored values are sealed under a key the ring lacks' });
      return check.up({ activeKeyId: this.keyRing.activeKid });
    } catch (error) {
      return check.down({ message: `key ring unusable: ${describe(error)}` });
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Error text for a probe; driver messages name hosts and codes, not credentials. */
function describe(error: unknown): string {
  const e = error as { code?: string; message?: string };
  return (e.code ? `${e.code} ` : '') + (e.message ?? 'unknown error').replace(/postgres(ql)?:\/\/[^\s]+/g, '<database url>');
}
