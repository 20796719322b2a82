import { ConnectionsModule } from '@app/connections';
import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { Drain } from './drain';
import { HealthController } from './health.controller';
import { KeyCoverage } from './key-coverage';
import { ReadinessChecks } from './readiness.service';

@Module({
  imports: [TerminusModule.forRoot({ logger: false }), ConnectionsModule],
  controllers: [HealthController],
  providers: [ReadinessChecks, KeyCoverage, Drain],
  exports: [Drain],
})
export class HealthModule {}
