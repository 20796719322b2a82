export * from './connection-cache';
export * from './token.service';
export * from './tokens.module';
export * from './usage-recorder';
