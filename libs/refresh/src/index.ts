export * from './backoff';
export * from './refresh-engine';
export * from './refresh-outcome';
export * from './refresh-planner';
export * from './refresh.module';
export * from './refresh-sweeper';
export * from './token-bucket';
export * from './issued-token-set';
