import { Public } from '@app/auth';
import { DomainError, ErrorCode } from '@app/common';
import { Metrics } from '@app/observability';
import { Controller, Get } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { Drain } from './drain';
import { ReadinessChecks } from './readiness.service';

/** Kubernetes probes. Public: they reveal no secret and must work without credentials. */
@ApiTags('health')
@Controller('health')
@Public()
export class HealthController {
  /** The last readiness answer (undefined before the first), so the metric counts changes, not probes. */
  private lastReady: boolean | undefined;

  constructor(
    private readonly health: HealthCheckService,
    private readonly checks: ReadinessChecks,
    private readonly drain: Drain,
    private readonly metrics: Metrics,
  ) {}

  /** The process is up and its event loop turns; no dependency is consulted. */
  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /**
   * Ready when the database answers with every migration applied and the key ring works, and
   * the replica is not shutting down: from SIGTERM on it answers 503 at once, without checking.
   */
  @Get('ready')
  async ready(): Promise<HealthCheckResult> {
    if (this.drain.active) throw new DomainError(ErrorCode.NotReady, 'not ready: shutting down');
    try {
      const result = await this.health.check([() => this.checks.database(), () => this.checks.keys()]);
      this.answered(true);
      return result;
    } catch (error) {
      const result = (error as { response?: HealthCheckResult }).response;
      if (!result?.error) throw error;
      this.answered(false);
      const reasons = Object.entries(result.error).map(([name, detail]) => `${name}: ${String(detail?.message ?? 'down')}`);
      throw new DomainError(ErrorCode.NotReady, `not ready: ${reasons.join('; ')}`, { checks: result.details });
    }
  }

  /** Counts a change of answer (a replica going out of rotation and back is what an alert watches for). */
  private answered(ready: boolean): void {
    if (this.lastReady !== undefined && this.lastReady !== ready) this.metrics.readinessChanges.inc({ to: ready ? 'ready' : 'not_ready' });
    this.lastReady = ready;
  }
}
