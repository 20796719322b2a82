import { DynamicModule, Global, Inject, Logger, Module, OnModuleInit } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import { dataSourceOptions } from './data-source-options';
import { DATABASE_URL, DatabaseNotifications } from './database-notifications';
import { runPendingMigrations } from './migration-runner';

const RUN_MIGRATIONS = Symbol('RUN_MIGRATIONS');

export interface DatabaseModuleOptions {
  url: string;
  /** Connections the pool opens at most (DATABASE_POOL_SIZE). */
  poolSize?: number;
  /** Apply pending migrations when the module starts (the service does; some tests do not). */
  runMigrations?: boolean;
}

/**
 * TypeORM over `pg`, and the process's one LISTEN connection (DatabaseNotifications). Entities
 * register themselves with TypeOrmModule.forFeature in their feature library; this module never
 * imports a feature.
 */
@Global()
@Module({})
export class DatabaseModule implements OnModuleInit {
  private readonly logger = new Logger('Database');

  constructor(
    private readonly dataSource: DataSource,
    @Inject(RUN_MIGRATIONS) private readonly runMigrations: boolean,
  ) {}

  static forRoot(options: DatabaseModuleOptions): DynamicModule {
    return {
      module: DatabaseModule,
      imports: [TypeOrmModule.forRoot({ ...dataSourceOptions(options.url, { poolSize: options.poolSize }), autoLoadEntities: true, retryAttempts: 3, retryDelay: 1000 })],
      providers: [
        { provide: RUN_MIGRATIONS, useValue: options.runMigrations ?? true },
        { provide: DATABASE_URL, useValue: options.url },
        DatabaseNotifications,
      ],
      exports: [DATABASE_URL, DatabaseNotifications],
    };
  }

  async onModuleInit(): Promise<void> {
    if (!this.runMigrations) return;
    const applied = await runPendingMigrations(this.dataSource);
    if (applied.length > 0) this.logger.log(`applied migrations: ${applied.join(', ')}`);
  }
}
