import { KEY_RING, KeyRing, TokenCipher } from '@app/crypto';
import { describeDatabaseError, isDatabaseUnavailable, pendingMigrations } from '@app/database';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { DataSource } from 'typeorm';
import { KeyCoverage } from './key-coverage';

const DATABASE_TIMEOUT_MS = 2_000;

/** The checks behind /health/ready: each answers quickly and says what is wrong, never a secret. */
@Injectable()
export class ReadinessChecks {
  private readonly logger = new Logger('Readiness');
  /** The database problem last logged, so a failing probe every few seconds logs once per change, not once per probe. */
  private loggedDatabaseProblem: string | undefined;

  constructor(
    private readonly indicators: HealthIndicatorService,
    private readonly dataSource: DataSource,
    private readonly cipher: TokenCipher,
    @Inject(KEY_RING) private readonly keyRing: KeyRing,
    private readonly coverage: KeyCoverage,
  ) {}

  /**
   * One round trip proves the server answers and tells whether every migration is applied. The
   * probe's answer is public: it says which check failed (`unreachable`), never the driver's
   * error, which names the database's host and port; that goes to the log at warn.
   */
  async database(): Promise<HealthIndicatorResult> {
    const check = this.indicators.check('database');
    try {
      const pending = await withTimeout(pendingMigrations(this.dataSource), DATABASE_TIMEOUT_MS);
      this.databaseProblem(undefined);
      if (pending.length > 0) return check.down({ message: `migrations not applied: ${pending.join(', ')}` });
      return check.up();
    } catch (error) {
      const unreachable = error instanceof ProbeTimeout || isDatabaseUnavailable(error);
      this.databaseProblem(error instanceof ProbeTimeout ? error.message : describeDatabaseError(error));
      return check.down({ message: unreachable ? 'unreachable' : 'query failed (see the log)' });
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

  /** Logs the database check's failure when it starts or changes, and its recovery. */
  private databaseProblem(problem: string | undefined): void {
    if (problem === this.loggedDatabaseProblem) return;
    if (problem !== undefined) this.logger.warn(`readiness: database check fails: ${problem}`);
    else this.logger.log('readiness: database check passes again');
    this.loggedDatabaseProblem = problem;
  }
}

class ProbeTimeout extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ProbeTimeout(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Error text for a probe; driver messages name hosts and codes, not credentials. */
function describe(error: unknown): string {
  const e = error as { code?: string; message?: string };
  return (e.code ? `${e.code} ` : '') + (e.message ?? 'unknown error').replace(/postgres(ql)?:\/\/[^\s]+/g, '<database url>');
}
