import { SealContexts, TokenCipher, TokenDecryptError, sealedKeyId } from '@app/crypto';
import { Injectable } from '@nestjs/common';
import { ConnectionUnreadableError } from './connection.errors';
import { AuthMode, ConnectionWithTokens, SealedConnection, TokenSet } from './connection.model';

/** The sealed values of a TokenSet, as their columns hold them. */
export interface SealedTokens {
  access: string;
  refresh: string | null;
}

/**
 * The only way between a connection's tokens and their ciphertext (DESIGN guarantees 1 and 2).
 * Each value is sealed for its row and field, so a value copied to another row or column does
 * not open; a value that does not open becomes a ConnectionUnreadableError that names the
 * connection and key id, never the value.
 */
@Injectable()
export class ConnectionSealer {
  constructor(private readonly cipher: TokenCipher) {}

  /** Seals for row `id`; a TokenSet without a refresh token seals none (null). */
  sealTokens(id: string, tokens: TokenSet): SealedTokens {
    const access = this.cipher.seal(tokens.accessToken, SealContexts.connectionToken(id, 'access_token'));
    const refresh = tokens.refreshToken ? this.cipher.seal(tokens.refreshToken, SealContexts.connectionToken(id, 'refresh_token')) : null;
    return { access, refresh };
  }

  /** Seals an API key for row `id`, under its own context: it never opens as one of the row's tokens. */
  sealCredential(id: string, apiKey: string): string {
    return this.cipher.seal(apiKey, SealContexts.staticCredential(id));
  }

  /**
   * Opens every sealed value: both tokens, or for an `api_key` connection its API key as
   * `accessToken`. Throws ConnectionUnreadableError naming the connection and key id.
   */
  unseal(sealed: SealedConnection): ConnectionWithTokens {
    const { record } = sealed;
    if (record.authMode === AuthMode.ApiKey) return { ...record, accessToken: this.openServed(sealed), refreshToken: null };
    if (sealed.sealedAccessToken === null) {
      throw new ConnectionUnreadableError(record.id, undefined, 'no token stored');
    }
    return {
      ...record,
      accessToken: this.open(record.id, sealed.sealedAccessToken, 'access_token'),
      refreshToken: sealed.sealedRefreshToken === null ? null : this.open(record.id, sealed.sealedRefreshToken, 'refresh_token'),
    };
  }

  /** Opens only the access token (the read path never needs the refresh token). */
  openAccessToken(sealed: SealedConnection): string {
    if (sealed.sealedAccessToken === null) throw new ConnectionUnreadableError(sealed.record.id, undefined, 'no token stored');
    return this.open(sealed.record.id, sealed.sealedAccessToken, 'access_token');
  }

  /** Seals a derived token (Copernica's REST v4 JWT) for row `id`, under its own context. */
  sealDerivedToken(id: string, token: string): string {
    return this.cipher.seal(token, SealContexts.derivedToken(id));
  }

  /** Opens the derived token of row `id`. Throws ConnectionUnreadableError naming the connection and key id. */
  openDerivedToken(id: string, sealed: string): string {
    try {
      return this.cipher.open(sealed, SealContexts.derivedToken(id));
    } catch (error) {
      throw asUnreadable(error, id, sealed);
    }
  }

  /**
   * Opens what a caller presents to the provider: the access token, or the API key of an
   * `api_key` connection (the token read path serves either).
   */
  openServed(sealed: SealedConnection): string {
    if (sealed.record.authMode !== AuthMode.ApiKey) return this.openAccessToken(sealed);
    if (sealed.sealedCredential === null) throw new ConnectionUnreadableError(sealed.record.id, undefined, 'no credential stored');
    try {
      return this.cipher.open(sealed.sealedCredential, SealContexts.staticCredential(sealed.record.id));
    } catch (error) {
      throw asUnreadable(error, sealed.record.id, sealed.sealedCredential);
    }
  }

  private open(id: string, sealed: string, field: 'access_token' | 'refresh_token'): string {
    try {
      return this.cipher.open(sealed, SealContexts.connectionToken(id, field));
    } catch (error) {
      throw asUnreadable(error, id, sealed);
    }
  }
}

/**
 * The cipher's refusal to open `sealed` as the domain error naming `label` (the row) and the key
 * id; any other error unchanged. Shared with key rotation, which opens values to re-seal them.
 */
export function asUnreadable(error: unknown, label: string, sealed: string): unknown {
  return error instanceof TokenDecryptError ? new ConnectionUnreadableError(label, error.kid ?? safeKeyId(sealed), error.reason) : error;
}

function safeKeyId(sealed: string): string | undefined {
  try {
    return sealedKeyId(sealed);
  } catch {
    return undefined;
  }
}
