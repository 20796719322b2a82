export * from './refresh-planner';
export * from './refresh.module';
