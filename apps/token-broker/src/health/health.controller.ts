import { Public } from '@app/auth';
import { DomainError, ErrorCode } from '@app/common';
import { Controller, Get } from '@nestjs/common';
import { ApiTags } from '@nestjs/swagger';
import { HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { ReadinessChecks } from './readiness.service';

/** Kubernetes probes. Public: they reveal no secret and must work without credentials. */
@ApiTags('health')
@Controller('health')
@Public()
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly checks: ReadinessChecks,
  ) {}

  /** The process is up and its event loop turns; no dependency is consulted. */
  @Get('live')
  live(): { status: 'ok' } {
    return { status: 'ok' };
  }

  /** Ready when the database answers with every migration applied and the key ring works. */
  @Get('ready')
  async ready(): Promise<HealthCheckResult> {
    try {
      return await this.health.check([() => this.checks.database(), () => this.checks.keys()]);
    } catch (error) {
      const result = (error as { response?: HealthCheckResult }).response;
      if (!result?.error) throw error;
      const reasons = Object.entries(result.error).map(([name, detail]) => `${name}: ${String(detail?.message ?? 'down')}`);
      throw new DomainError(ErrorCode.NotReady, `not ready: ${reasons.join('; ')}`, { checks: result.details });
    }
  }
}
