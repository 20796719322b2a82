export * from './connection-revoker';
export * from './revocation.module';
