import { Module } from '@nestjs/common';
import { ConnectionListRepository } from './connection-list.repository';
import { ConnectionRefreshRepository } from './connection-refresh.repository';
import { ConnectionRepository } from './connection.repository';
import { ConnectionSealer } from './connection.sealer';
import { KeyRotationRepository } from './key-rotation.repository';
import { PostgresConnectionListRepository } from './postgres-connection-list.repository';
import { PostgresConnectionRefreshRepository } from './postgres-connection-refresh.repository';
import { PostgresConnectionRepository } from './postgres-connection.repository';

/**
 * Connections and their sealed tokens in Postgres, one repository per job: connect, read and
 * revoke (ConnectionRepository); refresh leases and fenced refresh writes
 * (ConnectionRefreshRepository); the admin list (ConnectionListRepository); key rotation
 * (KeyRotationRepository). Knows nothing of HTTP or of any provider's quirks; never returns a
 * plaintext token except through ConnectionSealer.
 */
@Module({
  providers: [
    ConnectionSealer,
    { provide: ConnectionRepository, useClass: PostgresConnectionRepository },
    { provide: ConnectionRefreshRepository, useClass: PostgresConnectionRefreshRepository },
    { provide: ConnectionListRepository, useClass: PostgresConnectionListRepository },
    KeyRotationRepository,
  ],
  exports: [ConnectionSealer, ConnectionRepository, ConnectionRefreshRepository, ConnectionListRepository, KeyRotationRepository],
})
export class ConnectionsModule {}
