export * from './logger.module';
export * from './metrics';
export * from './observability.module';
export * from './redaction';
