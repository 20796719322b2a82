/**
 * Everything the fake providers remember, in memory: behaviours, planned failures, authorization
 * codes, grants and the tokens issued under them. It speaks OAuth (codes, grants, invalid_grant)
 * and knows nothing about HTTP. Plain Maps keyed by the random value keep 100k tokens cheap.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { perSandboxProvider } from './providers';
import { AuthorizeRequest, IssuedTokens, OAuthError, PresentedApiKey, ProviderSpec } from './providers/provider-spec';
import { StatsRecorder } from './sandbox-stats';
import {
  FailingEndpoint,
  InjectedFailure,
  ProviderBehaviour,
  SANDBOX_PROVIDERS,
  SandboxClient,
  SandboxProvider,
  SandboxUser,
} from './sandbox.types';

const CODE_TTL_MS = 10 * 60 * 1000;
/** A refresh token only makes sense for an expiring access token; this lifetime is used when none is configured. */
const LIFETIME_WHEN_REFRESHABLE_SEC = 3600;

/** One user's consent to one client; revoking any token of it revokes them all (RFC 7009 section 2.1). */
interface Grant {
  readonly provider: SandboxProvider;
  readonly clientId: string;
  readonly user: SandboxUser;
  readonly scope: string | undefined;
  revoked: boolean;
}

interface CodeRecord {
  readonly provider: SandboxProvider;
  readonly clientId: string;
  readonly redirectUri: string;
  readonly user: SandboxUser;
  readonly scope: string | undefined;
  readonly codeChallenge: string | undefined;
  readonly expiresAt: number;
}

export interface AccessTokenRecord {
  readonly grant: Grant;
  readonly expiresAt: number | null;
}

/** An API key a test registered: valid for its provider, with the email its owner has (Copper checks it). */
interface ApiKeyRecord {
  readonly grant: Grant;
  readonly userEmail: string;
}

interface RefreshTokenRecord {
  readonly grant: Grant;
  readonly expiresAt: number | null;
  /** Set when a rotating refresh consumed it; presenting it again is a replay. */
  rotated: boolean;
}

interface FailurePlan {
  untilCleared: InjectedFailure | undefined;
  queue: { failure: InjectedFailure; remaining: number }[];
}

export type GrantResult = { ok: true; tokens: IssuedTokens } | { ok: false; error: OAuthError };

export interface CodeRedemption {
  clientId: string;
  code: string;
  redirectUri: string | undefined;
  codeVerifier: string | undefined;
}

function randomValue(prefix: string): string {
  return prefix + randomBytes(24).toString('base64url');
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** RFC 7636 section 4.6: BASE64URL(SHA256(code_verifier)) == code_challenge. */
function pkceMatches(verifier: string, challenge: string): boolean {
  if (!/^[A-Za-z0-9\-._~]{43,128}$/.test(verifier)) return false;
  return createHash('sha256').update(verifier).digest('base64url') === challenge;
}

export class SandboxState {
  readonly stats = new StatsRecorder();
  private readonly behaviours = new Map<SandboxProvider, ProviderBehaviour>();
  /** Planned failures by provider and endpoint (`copernica/authenticate`). */
  private readonly failures = new Map<string, FailurePlan>();
  private readonly codes = new Map<string, CodeRecord>();
  private readonly accessTokens = new Map<string, AccessTokenRecord>();
  private readonly refreshTokens = new Map<string, RefreshTokenRecord>();
  private readonly apiKeys = new Map<string, ApiKeyRecord>();
  private readonly derivedTokens = new Map<string, AccessTokenRecord>();
  private readonly secretDigests: Record<SandboxProvider, Buffer>;

  constructor(
    private readonly specs: Readonly<Record<SandboxProvider, ProviderSpec>>,
    private readonly clients: Readonly<Record<SandboxProvider, SandboxClient>>,
    private readonly now: () => number,
  ) {
    this.secretDigests = perSandboxProvider((p) => digest(clients[p].clientSecret));
    this.reset();
  }

  /** Behaviours, failures, codes, tokens and counters back to their defaults. */
  reset(): void {
    for (const p of SANDBOX_PROVIDERS) {
      this.behaviours.set(p, { ...this.specs[p].defaults });
    }
    this.failures.clear();
    this.codes.clear();
    this.accessTokens.clear();
    this.refreshTokens.clear();
    this.apiKeys.clear();
    this.derivedTokens.clear();
    this.stats.reset();
  }

  // ---- behaviour and clients -------------------------------------------------------------

  behaviour(p: SandboxProvider): Readonly<ProviderBehaviour> {
    return this.behaviours.get(p) ?? this.specs[p].defaults;
  }

  configure(p: SandboxProvider, patch: Partial<ProviderBehaviour>): void {
    this.behaviours.set(p, { ...this.behaviour(p), ...patch });
  }

  client(p: SandboxProvider): Readonly<SandboxClient> {
    return this.clients[p];
  }

  isKnownClient(p: SandboxProvider, clientId: string | undefined): boolean {
    return clientId === this.clients[p].clientId;
  }

  /** Client id and secret both right; the secret is compared in constant time. */
  authenticateClient(p: SandboxProvider, clientId: string | undefined, clientSecret: string | undefined): boolean {
    if (!this.isKnownClient(p, clientId) || clientSecret === undefined) return false;
    return timingSafeEqual(digest(clientSecret), this.secretDigests[p]);
  }

  // ---- failure injection -----------------------------------------------------------------

  failNext(p: SandboxProvider, failure: InjectedFailure, count: number, endpoint: FailingEndpoint = 'token'): void {
    this.plan(p, endpoint).queue.push({ failure, remaining: count });
  }

  failUntilCleared(p: SandboxProvider, failure: InjectedFailure, endpoint: FailingEndpoint = 'token'): void {
    this.plan(p, endpoint).untilCleared = failure;
  }

  /** Every planned failure of `p` (all providers when left out), at every endpoint. */
  clearFailures(p?: SandboxProvider): void {
    for (const key of [...this.failures.keys()]) if (p === undefined || key.startsWith(`${p}/`)) this.failures.delete(key);
  }

  /** The failure the next request to that endpoint must suffer, if any (consumes one planned failure). */
  takeFailure(p: SandboxProvider, endpoint: FailingEndpoint = 'token'): InjectedFailure | undefined {
    const plan = this.plan(p, endpoint);
    if (plan.untilCleared) return plan.untilCleared;
    const head = plan.queue[0];
    if (!head) return undefined;
    head.remaining -= 1;
    if (head.remaining <= 0) plan.queue.shift();
    return head.failure;
  }

  private plan(p: SandboxProvider, endpoint: FailingEndpoint): FailurePlan {
    let plan = this.failures.get(`${p}/${endpoint}`);
    if (!plan) {
      plan = { untilCleared: undefined, queue: [] };
      this.failures.set(`${p}/${endpoint}`, plan);
    }
    return plan;
  }

  // ---- codes and tokens ------------------------------------------------------------------

  issueCode(spec: ProviderSpec, request: AuthorizeRequest): string {
    const code = randomValue(spec.prefixes.code);
    if (request.codeChallenge !== undefined) this.stats.pkceChallenged(spec.id);
    this.codes.set(code, {
      provider: spec.id,
      clientId: request.clientId,
      redirectUri: request.redirectUri,
      user: request.user,
      scope: spec.grantedScope(request.scope),
      codeChallenge: request.codeChallenge,
      expiresAt: this.now() + CODE_TTL_MS,
    });
    return code;
  }

  /** Authorization code grant (RFC 6749 section 4.1.3). A code is spent by any attempt to use it. */
  redeemCode(spec: ProviderSpec, request: CodeRedemption): GrantResult {
    const record = this.codes.get(request.code);
    if (record) this.codes.delete(request.code);
    if (!record || record.provider !== spec.id) return this.invalidGrant('unknown or already used authorization code');
    if (record.expiresAt <= this.now()) return this.invalidGrant('authorization code expired');
    if (record.clientId !== request.clientId) return this.invalidGrant('authorization code was issued to another client');
    if (record.redirectUri !== request.redirectUri) {
      return this.invalidGrant('redirect_uri does not match the authorization request');
    }
    if (record.codeChallenge !== undefined) {
      if (request.codeVerifier === undefined) return this.invalidGrant('code_verifier is required');
      if (!pkceMatches(request.codeVerifier, record.codeChallenge)) {
        return this.invalidGrant('code_verifier does not match the code_challenge');
      }
      this.stats.pkceVerified(spec.id);
    }
    const grant: Grant = { provider: spec.id, clientId: record.clientId, user: record.user, scope: record.scope, revoked: false };
    const b = this.behaviour(spec.id);
    const withRefresh = spec.refreshTokens && b.issueRefreshToken;
    return { ok: true, tokens: this.issue(spec, grant, { refreshable: withRefresh, withRefresh }) };
  }

  /** Refresh token grant (RFC 6749 section 6), rotating the refresh token when so configured. */
  refresh(spec: ProviderSpec, clientId: string, refreshToken: string): GrantResult {
    this.stats.refreshTokenPresented(refreshToken);
    const record = this.refreshTokens.get(refreshToken);
    if (!record || record.grant.provider !== spec.id) return this.invalidGrant('unknown refresh token');
    if (record.grant.clientId !== clientId) return this.invalidGrant('refresh token was issued to another client');
    if (record.grant.revoked) return this.invalidGrant('refresh token revoked');
    if (record.rotated) return this.invalidGrant('refresh token already used');
    if (record.expiresAt !== null && record.expiresAt <= this.now()) return this.invalidGrant('refresh token expired');
    const rotate = this.behaviour(spec.id).rotateRefreshTokens;
    if (rotate) record.rotated = true;
    return { ok: true, tokens: this.issue(spec, record.grant, { refreshable: true, withRefresh: rotate }) };
  }

  /** A token set minted without a dance, registered like any other. */
  mint(spec: ProviderSpec, user: SandboxUser, expiresInSec: number | null | undefined): IssuedTokens {
    const client = this.clients[spec.id];
    const grant: Grant = { provider: spec.id, clientId: client.clientId, user, scope: spec.grantedScope(undefined), revoked: false };
    const withRefresh = spec.refreshTokens && this.behaviour(spec.id).issueRefreshToken;
    return this.issue(spec, grant, { refreshable: withRefresh, withRefresh, expiresInSec });
  }

  /** The record of a currently valid access token of this provider: known, not expired, not revoked. */
  validAccessToken(spec: ProviderSpec, accessToken: string): AccessTokenRecord | undefined {
    const record = this.accessTokens.get(accessToken);
    if (!record || record.grant.provider !== spec.id || record.grant.revoked) return undefined;
    if (record.expiresAt !== null && record.expiresAt <= this.now()) return undefined;
    return record;
  }

  /** Registers an API key of this provider (a new random one unless `apiKey` is given), owned by `user`. */
  registerApiKey(spec: ProviderSpec, user: SandboxUser, apiKey: string | undefined): { apiKey: string; userEmail: string } {
    const key = apiKey ?? randomValue(spec.prefixes.apiKey);
    const grant: Grant = { provider: spec.id, clientId: '(api key)', user, scope: undefined, revoked: false };
    this.apiKeys.set(key, { grant, userEmail: user.email });
    return { apiKey: key, userEmail: user.email };
  }

  /**
   * The record of a registered API key presented the provider's whole way (for Copper with its
   * owner's email, compared without regard to case), as an access token's record, or undefined.
   */
  validApiKey(spec: ProviderSpec, presented: PresentedApiKey): AccessTokenRecord | undefined {
    const record = this.apiKeys.get(presented.key);
    const valid =
      record !== undefined &&
      record.grant.provider === spec.id &&
      presented.complete &&
      (!spec.apiKeyNeedsEmail || presented.userEmail?.toLowerCase() === record.userEmail.toLowerCase());
    this.stats.apiKeyCheck(spec.id, valid);
    return valid ? { grant: record.grant, expiresAt: null } : undefined;
  }

  /**
   * Mints a derived token (Copernica's REST v4 JWT) for the grant behind a valid access token or
   * API key: an unsigned-looking compact JWT whose `exp` is `lifetimeSec` from now (none when null).
   */
  mintDerivedToken(spec: ProviderSpec, from: AccessTokenRecord, lifetimeSec: number | null): string {
    const nowSec = Math.floor(this.now() / 1000);
    const header = Buffer.from(JSON.stringify({ alg: 'HS256', typ: 'JWT' })).toString('base64url');
    const claims: Record<string, unknown> = { sub: from.grant.user.id, iat: nowSec, jti: randomBytes(12).toString('base64url') };
    if (lifetimeSec !== null) claims.exp = nowSec + lifetimeSec;
    const jwt = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${randomBytes(32).toString('base64url')}`;
    this.derivedTokens.set(jwt, { grant: from.grant, expiresAt: lifetimeSec === null ? null : (nowSec + lifetimeSec) * 1000 });
    this.stats.derivedTokenMinted(spec.id);
    return jwt;
  }

  /** The record of a derived token this provider minted that is still valid (its grant not revoked). */
  validDerivedToken(spec: ProviderSpec, token: string): AccessTokenRecord | undefined {
    const record = this.derivedTokens.get(token);
    if (!record || record.grant.provider !== spec.id || record.grant.revoked) return undefined;
    if (record.expiresAt !== null && record.expiresAt <= this.now()) return undefined;
    return record;
  }

  /**
   * RFC 7009: revoke the grant behind an access or refresh token of this client. Unknown tokens
   * are ignored (the caller still answers 200). Returns whether anything was revoked.
   */
  revoke(spec: ProviderSpec, clientId: string, token: string, hint: string | undefined): boolean {
    const lookups = hint === 'refresh_token' ? [this.refreshTokens, this.accessTokens] : [this.accessTokens, this.refreshTokens];
    for (const map of lookups) {
      const record = map.get(token);
      if (record && record.grant.provider === spec.id && record.grant.clientId === clientId) {
        record.grant.revoked = true;
        return true;
      }
    }
    return false;
  }

  private issue(
    spec: ProviderSpec,
    grant: Grant,
    opts: { refreshable: boolean; withRefresh: boolean; expiresInSec?: number | null },
  ): IssuedTokens {
    const b = this.behaviour(spec.id);
    const now = this.now();
    let expiresInSec: number | null = null;
    if (spec.tokensExpire) {
      expiresInSec =
        opts.expiresInSec !== undefined
          ? opts.expiresInSec
          : (b.tokenLifetimeSec ?? (opts.refreshable ? LIFETIME_WHEN_REFRESHABLE_SEC : null));
    }
    const accessToken = randomValue(spec.prefixes.access);
    this.accessTokens.set(accessToken, { grant, expiresAt: expiresInSec === null ? null : now + expiresInSec * 1000 });
    const issued: IssuedTokens = { accessToken, tokenType: 'Bearer', expiresInSec, scope: grant.scope };
    if (opts.withRefresh) {
      const refreshToken = randomValue(spec.prefixes.refresh);
      const lifetime = b.refreshTokenLifetimeSec;
      this.refreshTokens.set(refreshToken, { grant, expiresAt: lifetime === null ? null : now + lifetime * 1000, rotated: false });
      issued.refreshToken = refreshToken;
      issued.refreshTokenExpiresInSec = lifetime;
    }
    return issued;
  }

  private invalidGrant(description: string): GrantResult {
    this.stats.invalidGrant();
    return { ok: false, error: { error: 'invalid_grant', description } };
  }
}
