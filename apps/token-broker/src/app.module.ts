import { AuthModule } from '@app/auth';
import { Clock } from '@app/common';
import { AppConfig, ConfigModule } from '@app/config';
import { CryptoModule } from '@app/crypto';
import { DatabaseModule } from '@app/database';
import { ObservabilityModule } from '@app/observability';
import { TokensModule } from '@app/tokens';
import { DynamicModule, Global, Module } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { ConnectModule } from '@app/connect';
import { ConnectController } from './connect/connect.controller';
import { ConnectSessionsController } from './connect/connect-sessions.controller';
import { HealthModule } from './health/health.module';
import { TokensController } from './tokens/tokens.controller';
import { ErrorFilter } from './http/error.filter';

export interface AppModuleOptions {
  config: AppConfig;
  /** The database to use: DATABASE_URL, or the embedded server started by the broker. */
  databaseUrl: string;
}

/** Side-effect-free infrastructure every feature may inject. */
@Global()
@Module({ providers: [Clock], exports: [Clock] })
class CoreModule {}

/** Wires the broker: infrastructure libraries first, then the HTTP features. */
@Module({})
export class AppModule {
  static forRoot({ config, databaseUrl }: AppModuleOptions): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ConfigModule.forRoot(config),
        CoreModule,
        ObservabilityModule,
        DatabaseModule.forRoot({ url: databaseUrl }),
        CryptoModule.forRoot(config.tokenEncryptionKeys),
        AuthModule,
        HealthModule,
        ConnectModule,
        TokensModule,
      ],
      controllers: [ConnectSessionsController, ConnectController, TokensController],
      providers: [{ provide: APP_FILTER, useClass: ErrorFilter }],
    };
  }
}
