import { Global, Module } from '@nestjs/common';
import { LoggerModule } from './logger.module';
import { Metrics } from './metrics';

/** Logs (pino, redacted) and metrics (prom-client) for every feature. */
@Global()
@Module({ imports: [LoggerModule], providers: [Metrics], exports: [Metrics] })
export class ObservabilityModule {}
