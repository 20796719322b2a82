export * from './audit-events';
export * from './audit-cursor';
export * from './audit-retention';
export * from './audit-writer';
export * from './audit.module';
export * from './audit.repository';
export * from './postgres-audit.repository';
export * from './token-read-audit';
