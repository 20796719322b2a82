/**
 * Counters a test or a benchmark reads to prove what the broker did at the provider: how many
 * exchanges and refreshes, whether a refresh token was ever presented twice. Refresh tokens are
 * keyed by a hash prefix so the stats can be printed or saved without leaking a token.
 */
import { createHash } from 'node:crypto';
import { perSandboxProvider as perProvider } from './providers';
import { SandboxProvider, SandboxStats, TokenRequestCounts } from './sandbox.types';

/** First 16 hex characters of sha256(token): enough to tell tokens apart, useless to an attacker. */
export function tokenFingerprint(token: string): string {
  return createHash('sha256').update(token).digest('hex').slice(0, 16);
}

export class StatsRecorder {
  private tokenRequests = perProvider<TokenRequestCounts>(() => ({ authorizationCode: 0, refresh: 0, failuresInjected: 0 }));
  private refreshTokenUses = new Map<string, number>();
  private duplicateRefreshUses = 0;
  private invalidGrants = 0;
  private revocations = perProvider(() => 0);
  private identityRequests = perProvider(() => 0);
  private pkce = perProvider(() => ({ challenged: 0, verified: 0 }));
  private apiKeyChecks = perProvider(() => ({ accepted: 0, refused: 0 }));
  private derivedTokenMints = perProvider(() => 0);

  derivedTokenMinted(p: SandboxProvider): void {
    this.derivedTokenMints[p] += 1;
  }

  apiKeyCheck(p: SandboxProvider, accepted: boolean): void {
    if (accepted) this.apiKeyChecks[p].accepted += 1;
    else this.apiKeyChecks[p].refused += 1;
  }

  tokenRequest(p: SandboxProvider, grant: 'authorizationCode' | 'refresh'): void {
    this.tokenRequests[p][grant] += 1;
  }

  failureInjected(p: SandboxProvider): void {
    this.tokenRequests[p].failuresInjected += 1;
  }

  refreshTokenPresented(refreshToken: string): void {
    const key = tokenFingerprint(refreshToken);
    const before = this.refreshTokenUses.get(key) ?? 0;
    if (before > 0) this.duplicateRefreshUses += 1;
    this.refreshTokenUses.set(key, before + 1);
  }

  invalidGrant(): void {
    this.invalidGrants += 1;
  }

  revocation(p: SandboxProvider): void {
    this.revocations[p] += 1;
  }

  identityRequest(p: SandboxProvider): void {
    this.identityRequests[p] += 1;
  }

  pkceChallenged(p: SandboxProvider): void {
    this.pkce[p].challenged += 1;
  }

  pkceVerified(p: SandboxProvider): void {
    this.pkce[p].verified += 1;
  }

  /** A copy: later requests do not change a snapshot already taken. */
  snapshot(): SandboxStats {
    return {
      tokenRequests: perProvider((p) => ({ ...this.tokenRequests[p] })),
      refreshTokenUses: Object.fromEntries(this.refreshTokenUses),
      duplicateRefreshUses: this.duplicateRefreshUses,
      invalidGrants: this.invalidGrants,
      revocations: { ...this.revocations },
      identityRequests: { ...this.identityRequests },
      pkce: perProvider((p) => ({ ...this.pkce[p] })),
      apiKeyChecks: perProvider((p) => ({ ...this.apiKeyChecks[p] })),
      derivedTokenMints: { ...this.derivedTokenMints },
    };
  }

  reset(): void {
    this.tokenRequests = perProvider(() => ({ authorizationCode: 0, refresh: 0, failuresInjected: 0 }));
    this.refreshTokenUses = new Map();
    this.duplicateRefreshUses = 0;
    this.invalidGrants = 0;
    this.revocations = perProvider(() => 0);
    this.identityRequests = perProvider(() => 0);
    this.pkce = perProvider(() => ({ challenged: 0, verified: 0 }));
    this.apiKeyChecks = perProvider(() => ({ accepted: 0, refused: 0 }));
    this.derivedTokenMints = perProvider(() => 0);
  }
}
