export * from './connect-flow.repository';
export * from './connect-pages';
export * from './connect.module';
export * from './connect.service';
export * from './return-to-policy';
