export * from './provider-client';
export * from './provider-definition';
export * from './provider-error';
export * from './provider-identity';
export * from './provider-registry';
export * from './provider-settings';
export * from './providers.module';
export * from './token-response';
