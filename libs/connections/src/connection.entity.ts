import { Column, Entity, PrimaryColumn } from 'typeorm';

/** Table mapping only; code outside this library works with ConnectionRecord instead. */
@Entity('connections')
export class ConnectionEntity {
  @PrimaryColumn('uuid') id!: string;
  @Column('varchar') account!: string;
  @Column('varchar') provider!: string;
  @Column('varchar') status!: string;
  @Column({ name: 'access_token_sealed', type: 'text', nullable: true }) accessTokenSealed!: string | null;
  @Column({ name: 'refresh_token_sealed', type: 'text', nullable: true }) refreshTokenSealed!: string | null;
  @Column({ name: 'token_type', type: 'varchar', nullable: true }) tokenType!: string | null;
  @Column({ type: 'text', nullable: true }) scope!: string | null;
  @Column({ name: 'expires_at', type: 'timestamptz', nullable: true }) expiresAt!: Date | null;
  @Column({ name: 'refresh_token_expires_at', type: 'timestamptz', nullable: true }) refreshTokenExpiresAt!: Date | null;
  @Column({ type: 'jsonb', nullable: true }) identity!: Record<string, string> | null;
  @Column({ name: 'created_at', type: 'timestamptz' }) createdAt!: Date;
  @Column({ name: 'updated_at', type: 'timestamptz' }) updatedAt!: Date;
  @Column({ name: 'connected_at', type: 'timestamptz' }) connectedAt!: Date;
  @Column({ name: 'last_refreshed_at', type: 'timestamptz', nullable: true }) lastRefreshedAt!: Date | null;
  @Column({ name: 'last_used_at', type: 'timestamptz', nullable: true }) lastUsedAt!: Date | null;
  @Column({ name: 'last_error_code', type: 'varchar', nullable: true }) lastErrorCode!: string | null;
  @Column({ name: 'last_error_message', type: 'text', nullable: true }) lastErrorMessage!: string | null;
  @Column({ name: 'last_error_at', type: 'timestamptz', nullable: true }) lastErrorAt!: Date | null;
  @Column('int') version!: number;
  @Column({ name: 'next_refresh_at', type: 'timestamptz', nullable: true }) nextRefreshAt!: Date | null;
  @Column({ name: 'refresh_failures', type: 'int' }) refreshFailures!: number;
  @Column({ name: 'lease_owner', type: 'varchar', nullable: true }) leaseOwner!: string | null;
  @Column({ name: 'lease_expires_at', type: 'timestamptz', nullable: true }) leaseExpiresAt!: Date | null;
}
