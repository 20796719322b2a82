export * from './provider-definition';
export * from './provider-registry';
