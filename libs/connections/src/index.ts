export * from './connection.entity';
export * from './connection.errors';
export * from './connection.model';
export * from './connection.repository';
export * from './connections.module';
export * from './typeorm-connection.repository';
export * from './key-rotation';
export * from './key-rotation.repository';
