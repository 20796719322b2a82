import { Module } from '@nestjs/common';
import { TypeOrmModule } from '@nestjs/typeorm';
import { ConnectionEntity } from './connection.entity';
import { ConnectionRepository } from './connection.repository';
import { KeyRotationRepository } from './key-rotation.repository';
import { TypeormConnectionRepository } from './typeorm-connection.repository';

/**
 * Connections and their sealed tokens in Postgres. Knows nothing of HTTP or of any provider's
 * quirks; never returns a plaintext token except through ConnectionRepository.unseal.
 */
@Module({
  imports: [TypeOrmModule.forFeature([ConnectionEntity])],
  providers: [{ provide: ConnectionRepository, useClass: TypeormConnectionRepository }, KeyRotationRepository],
  exports: [ConnectionRepository, KeyRotationRepository],
})
export class ConnectionsModule {}
