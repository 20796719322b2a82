import type { SealedConnection } from '@app/connections';

/** What became of a refresh request; the read path and the sweep act on the kind. */
export type RefreshOutcome =
  /** New tokens were obtained and stored. */
  | { kind: 'refreshed'; connection: SealedConnection }
  /** Nothing to do any more: another holder refreshed it meanwhile, or it no longer needs it. */
  | { kind: 'fresh'; connection: SealedConnection }
  /** The provider refused the refresh token; the connection is now needs_reauth. */
  | { kind: 'needs_reauth'; message: string }
  /** No refresh token stored: only a reconnect gives a new token. */
  | { kind: 'not_refreshable'; connection: SealedConnection }
  /** The connection is not active (revoked, needs_reauth) or gone. */
  | { kind: 'inactive'; status: string | null }
  /** 429/5xx/timeout: try again later (no sooner than retryAfterSec, when given). */
  | { kind: 'transient'; message: string; retryAfterSec?: number }
  /** Our client credentials or the provider's configuration are wrong; connections are untouched. */
  | { kind: 'misconfigured'; message: string }
  /** A stored token cannot be opened with the key ring (its key left the ring, or it was altered): an operator must act. */
  | { kind: 'unreadable'; message: string }
  /** Another replica held the lease for longer than we could wait. */
  | { kind: 'busy' };

export type RefreshTrigger = 'read' | 'sweep' | 'admin';
