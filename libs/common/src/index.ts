export * from './domain-error';
export * from './clock';
export * from './account-id';
export * from './url-for-display';
export * from './lease-owner-id';
