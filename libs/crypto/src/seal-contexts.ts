import type { SealContext } from './token-cipher';

/**
 * The additional authenticated data of every kind of sealed value the broker stores, in one
 * place: the writer, the reader and key rotation must build exactly the same context, or a
 * re-sealed value no longer opens.
 */
export const SealContexts = {
  /** A connection's access or refresh token, bound to its row and column. */
  connectionToken(connectionId: string, field: 'access_token' | 'refresh_token'): SealContext {
    return { connectionId, field };
  },
  /** A connection's static credential (an API key), bound to its row: never opens as a token of that row. */
  staticCredential(connectionId: string): SealContext {
    return { connectionId, field: 'static_credential' };
  },
  /** A token the broker derived from the connection's own (Copernica's REST v4 JWT), bound to its row. */
  derivedToken(connectionId: string): SealContext {
    return { connectionId, field: 'derived_token' };
  },
  /** The PKCE verifier of a pending authorization, bound to the digest of its `state` (hex). */
  codeVerifier(stateHashHex: string): SealContext {
    return { connectionId: `state:${stateHashHex}`, field: 'code_verifier' };
  },
} as const;
