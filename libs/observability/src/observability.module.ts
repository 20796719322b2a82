import { Global, Module } from '@nestjs/common';
import { Metrics } from './metrics';

/** Metrics (prom-client) for every feature. Logging is set up with the HTTP adapter, see broker.ts. */
@Global()
@Module({ providers: [Metrics], exports: [Metrics] })
export class ObservabilityModule {}
