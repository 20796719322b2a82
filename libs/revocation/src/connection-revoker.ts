import { DomainError } from '@app/common';
import { AppConfig } from '@app/config';
import { AuthMode, ConnectionRecord, ConnectionRepository, ConnectionSealer, ConnectionStatus, RevocationReason, SealedConnection } from '@app/connections';
import { isProviderId, ProviderClient, providerDefinition, ProviderError, ProviderSettings } from '@app/providers';
import { ConnectionCache } from '@app/tokens';
import { Injectable, Logger } from '@nestjs/common';

/** What became of one stored token at the provider. */
export type TokenRevocation = 'revoked' | 'not_supported' | 'failed' | 'not_stored';
export const TOKEN_REVOCATIONS: readonly TokenRevocation[] = ['revoked', 'not_supported', 'failed', 'not_stored'];

/** Rounds of "revoke what is stored, then erase it if it is still what is stored". */
const MAX_ATTEMPTS = 3;

export interface RevocationReport {
  /** The row after this call (status revoked). */
  connection: ConnectionRecord;
  /** It was revoked (by an earlier or a concurrent call) before this one could erase anything. */
  alreadyRevoked: boolean;
  accessToken: TokenRevocation;
  refreshToken: TokenRevocation;
  /** Why the provider did not confirm, when a revocation failed (ProviderError messages hold no secret). */
  providerError: string | null;
  erasedLocally: boolean;
}

/** What the provider was told about one connection's stored tokens. */
export interface AtProvider {
  accessToken: TokenRevocation;
  refreshToken: TokenRevocation;
  errors: string[];
}

const NOTHING_SENT: AtProvider = { accessToken: 'not_stored', refreshToken: 'not_stored', errors: [] };

/**
 * Revokes one connection: RFC 7009 at the provider for each stored token (where the provider
 * has an endpoint), then erases the tokens locally and marks the row revoked. A provider that
 * fails never blocks the local erase; the report says which happened where.
 *
 * The erase is fenced by the row version: if a refresh or a reconnect stored other tokens while
 * we were at the provider, those are revoked too before anything is erased, so no live token
 * is dropped unrevoked. Revoking a revoked connection writes nothing.
 */
@Injectable()
export class ConnectionRevoker {
  private readonly logger = new Logger('Revocation');

  constructor(
    private readonly config: AppConfig,
    private readonly connections: ConnectionRepository,
    private readonly sealer: ConnectionSealer,
    private readonly client: ProviderClient,
    private readonly cache: ConnectionCache,
  ) {}

  /** null: the connection does not exist (any more). `reason` is the admin action, told to webhook receivers. */
  async revoke(id: string, reason: RevocationReason): Promise<RevocationReport | null> {
    let last: AtProvider | undefined;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const sealed = await this.connections.findSealedById(id);
      if (!sealed) return null;
      if (sealed.record.status === ConnectionStatus.Revoked) {
        return report(sealed.record, last ?? NOTHING_SENT, { alreadyRevoked: true, erasedLocally: false });
      }
      last = await this.revokeAtProvider(sealed);
      const erased = await this.connections.markRevokedIfUnchanged(id, sealed.record.version, reason);
      if (erased) return this.erased(erased, last);
    }
    // The row kept changing under us: erase whatever it holds now; what was revoked is reported.
    this.logger.warn(`connection ${id} changed during ${MAX_ATTEMPTS} revocation rounds; erasing it regardless`);
    const erased = await this.connections.markRevoked(id, reason);
    return erased ? this.erased(erased, last ?? NOTHING_SENT) : null;
  }

  private erased(record: ConnectionRecord, atProvider: AtProvider): RevocationReport {
    // Other replicas hear of it by NOTIFY; this one must not serve its cached copy meanwhile.
    this.cache.invalidate(record.account);
    return report(record, atProvider, { alreadyRevoked: false, erasedLocally: true });
  }

  /**
   * Revokes at the provider what the row holds, without erasing anything: for a caller that
   * replaces the grant itself (storing an API key over it), fenced by the version it read.
   * The refresh token first: RFC 7009 lets revoking it end the whole grant, access tokens
   * included. A static credential has no revocation API anywhere: `not_supported`.
   */
  async revokeAtProvider(sealed: SealedConnection): Promise<AtProvider> {
    if (sealed.record.authMode === AuthMode.ApiKey) {
      return { accessToken: sealed.sealedCredential === null ? 'not_stored' : 'not_supported', refreshToken: 'not_stored', errors: [] };
    }
    const errors: string[] = [];
    const refreshToken = await this.revokeOne(sealed, 'refresh_token', errors);
    const accessToken = await this.revokeOne(sealed, 'access_token', errors);
    return { accessToken, refreshToken, errors: [...new Set(errors)] };
  }

  private async revokeOne(sealed: SealedConnection, hint: 'access_token' | 'refresh_token', errors: string[]): Promise<TokenRevocation> {
    const stored = hint === 'access_token' ? sealed.sealedAccessToken : sealed.sealedRefreshToken;
    if (stored === null) return 'not_stored';
    const provider = sealed.record.provider;
    if (!isProviderId(provider)) {
      errors.push(`"${provider.slice(0, 40)}" is not a provider this broker knows`);
      return 'failed';
    }
    if (providerDefinition(provider).revocation === 'none') return 'not_supported';
    const settings: ProviderSettings | undefined = this.config.providers[provider];
    if (!settings) {
      errors.push(`${provider} is not configured on this broker, so it could not be asked to revoke`);
      return 'failed';
    }
    let token: string;
    try {
      token = hint === 'access_token' ? this.sealer.openAccessToken(sealed) : (this.sealer.unseal(sealed).refreshToken ?? '');
    } catch (error) {
      // A token sealed under a key that left the ring cannot be sent anywhere; it is still erased.
      if (error instanceof DomainError) {
        errors.push(error.message);
        return 'failed';
      }
      throw error;
    }
    try {
      return (await this.client.revoke(settings, token, hint)) === 'revoked' ? 'revoked' : 'not_supported';
    } catch (error) {
      if (error instanceof ProviderError) {
        errors.push(error.message);
      } else {
        this.logger.error({ err: error, connectionId: sealed.record.id }, `unexpected error revoking a ${provider} ${hint}`);
        errors.push(`unexpected error while asking ${provider} to revoke`);
      }
      return 'failed';
    }
  }
}

function report(record: ConnectionRecord, atProvider: AtProvider, flags: { alreadyRevoked: boolean; erasedLocally: boolean }): RevocationReport {
  return {
    connection: record,
    ...flags,
    accessToken: atProvider.accessToken,
    refreshToken: atProvider.refreshToken,
    providerError: atProvider.errors.length > 0 ? atProvider.errors.join('; ') : null,
  };
}
