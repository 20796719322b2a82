export * from './app-config';
export * from './config.module';
export * from './load-config';
export * from './named-secret';
export * from './secret-files';
export * from './dev-secrets';
export * from './service-grants';
export * from './webhook-settings';
