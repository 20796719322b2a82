export * from './access.decorators';
export * from './api-key.guard';
export * from './api-key-verifier';
export * from './auth.module';
export * from './caller';
export * from './service-grants';
