export * from './credential-input';
export * from './credentials.module';
export * from './static-credential.service';
