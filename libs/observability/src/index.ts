export * from './audit-log';
export * from './broker-logger';
export * from './metrics';
export * from './observability.module';
export * from './redaction';
export * from './request-log';
