export * from './data-source-options';
export * from './database-clock';
export * from './database-notifications';
export * from './database.module';
export * from './database-unavailable';
export * from './migration-runner';
