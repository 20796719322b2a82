import { AuditModule } from '@app/audit';
import { AuthModule } from '@app/auth';
import { Clock } from '@app/common';
import { AppConfig, ConfigModule } from '@app/config';
import { ConnectionsModule } from '@app/connections';
import { CryptoModule } from '@app/crypto';
import { DatabaseClock, DatabaseModule } from '@app/database';
import { ObservabilityModule } from '@app/observability';
import { TokensModule } from '@app/tokens';
import { WebhooksModule } from '@app/webhooks';
import { DynamicModule, Global, Module } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { RefreshModule } from '@app/refresh';
import { BrokerScheduler } from './scheduling/broker.scheduler';
import { APP_FILTER } from '@nestjs/core';
import { ConnectModule } from '@app/connect';
import { ConnectController } from './connect/connect.controller';
import { ConnectSessionsController } from './connect/connect-sessions.controller';
import { HealthModule } from './health/health.module';
import { MetricsController } from './metrics/metrics.controller';
import { TokenReadRoute } from './tokens/token-read.route';
import { ErrorFilter } from './http/error.filter';
import { AdminModule } from './admin/admin.module';

export interface AppModuleOptions {
  config: AppConfig;
  /** The database to use: DATABASE_URL, or the embedded server started by the broker. */
  databaseUrl: string;
  /** Replaces the database-corrected clock (tests move time instead of sleeping). */
  clock?: Clock;
}

/**
 * Infrastructure every feature may inject: the clock. Unless a test brings its own, it is the
 * local clock corrected to the database's, since replicas compare the times they write.
 */
@Global()
@Module({})
class CoreModule {
  static forRoot(clock?: Clock): DynamicModule {
    const provider = clock ? { provide: Clock, useValue: clock } : { provide: Clock, useClass: DatabaseClock };
    return { module: CoreModule, providers: [provider], exports: [Clock] };
  }
}

/** Wires the broker: infrastructure libraries first, then the HTTP features. */
@Module({})
export class AppModule {
  static forRoot({ config, databaseUrl, clock }: AppModuleOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        CoreModule.forRoot(clock),
        ScheduleModule.forRoot(),
        ObservabilityModule,
        DatabaseModule.forRoot({ url: databaseUrl, poolSize: config.databasePoolSize }),
        CryptoModule.forRoot(config.tokenEncryptionKeys),
        AuthModule,
        AuditModule,
        ConnectionsModule,
        HealthModule,
        ConnectModule,
        TokensModule,
        RefreshModule,
        AdminModule,
        WebhooksModule,
      ],
      controllers: [ConnectSessionsController, ConnectController, MetricsController],
      providers: [{ provide: APP_FILTER, useClass: ErrorFilter }, BrokerScheduler, TokenReadRoute],
    };
  }
}
