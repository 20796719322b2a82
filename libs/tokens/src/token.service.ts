import { Clock, DomainError, ErrorCode } from '@app/common';
import { AuthMode, ConnectionErrorCode, ConnectionRecord, ConnectionSealer, ConnectionStatus } from '@app/connections';
import { AuditLog, Metrics } from '@app/observability';
import { isProviderId, presentToken, PROVIDER_DEFINITIONS, providerDefinition, ProviderId, TokenPresentation, unknownProviderError } from '@app/providers';
import { auditSystemRefresh, isBackingOff, RefreshEngine } from '@app/refresh';
import { Injectable, Optional } from '@nestjs/common';
import { CachedConnection, connectionsFrom } from './cached-connection';
import { ConnectionCache } from './connection-cache';
import { isoTime } from './iso-time';
import { UsageRecorder } from './usage-recorder';

export const DEFAULT_MIN_VALIDITY_SEC = 60;
/** What to do about an api_key connection that cannot serve. */
const ENTER_A_NEW_KEY = 'store a new API key (PUT /admin/connections/:account/credentials, or a connect session with authMode api_key)';
/** Asking for more than this would force a refresh on nearly every read of hour-long tokens. */
export const MAX_MIN_VALIDITY_SEC = 1_800;

export interface IssuedToken {
  account: string;
  provider: string;
  accessToken: string;
  tokenType: string;
  expiresAt: string | null;
  scope: string | null;
  apply: TokenPresentation;
  authMode: AuthMode;
}

/** pick's answer when more than one connection would do: the read must name its provider. */
const SEVERAL = Symbol('several connections');

/**
 * The connection a read asks for among an account's (`first`, chained; null: none): the one at
 * `provider`, or, when it names none, the only one at a provider in `granted` (any, when
 * undefined). undefined when there is none, SEVERAL when more than one would do. A walk of the
 * chain that allocates nothing: the read of a cached token allocates nothing it can avoid.
 */
function pick(first: CachedConnection | null, provider: string | undefined, granted: ReadonlyArray<string> | undefined): CachedConnection | typeof SEVERAL | undefined {
  let match: CachedConnection | undefined;
  for (let connection = first; connection !== null; connection = connection.next) {
    if (provider !== undefined ? connection.provider !== provider : granted !== undefined && !granted.includes(connection.provider)) continue;
    if (match !== undefined) return SEVERAL;
    match = connection;
  }
  return match;
}

/** Whether the connection's token expires within `minValidityMs` of `now` (a token without an expiry never does). */
function expiresWithin(connection: CachedConnection, now: number, minValidityMs: number): boolean {
  return connection.expiresAtMs !== null && connection.expiresAtMs - now < minValidityMs;
}

/**
 * GET /tokens/:account: a token valid for at least `minValidity` seconds, refreshed first when
 * needed. The hot path is a cache hit and a few comparisons; it never writes to the database.
 */
@Injectable()
export class TokenService {
  constructor(
    private readonly cache: ConnectionCache,
    private readonly sealer: ConnectionSealer,
    private readonly engine: RefreshEngine,
    private readonly usage: UsageRecorder,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    // Optional so that a read path built by hand below Nest (the service-tier specs) needs no audit trail.
    @Optional() private readonly audit?: AuditLog,
  ) {}

  /**
   * Synchronous when the account is cached and its token needs no refresh (nearly every read):
   * no promise is made on the hot path. A cache miss or a refresh makes it a promise. So a caller
   * must expect both a synchronous throw and a rejection: `await` inside a try, or hand the
   * result to Fastify (TokenReadRoute), handles both; `.then()`/`.catch()` on the result does not.
   *
   * `granted`: when `provider` is omitted, only connections at these providers are considered
   * (the caller's grants, checked before this call); undefined considers every one.
   *
   * `api`: the token derived for that API of the provider (`v4`: Copernica's REST v4 JWT) instead
   * of the connection's own; served from the cache like it, minted when there is none valid for
   * `minValidity`. 400 api_not_supported when the connection's provider derives none for it.
   */
  tokenFor(
    account: string,
    provider: string | undefined,
    minValiditySec: number,
    granted?: ReadonlyArray<string>,
    api?: string,
  ): IssuedToken | Promise<IssuedToken> {
    const now = this.clock.nowMs();
    const cached = this.cache.cached(account, now);
    if (cached !== undefined) return this.serve(this.choose(account, provider, cached, granted), minValiditySec, now, api);
    return this.cache.load(account, now).then((loaded) => this.serve(this.choose(account, provider, loaded, granted), minValiditySec, now, api));
  }

  /**
   * The answer tokenFor would give, when it can be given from this replica's cache as it stands:
   * the account is cached, exactly one of its connections is asked for (or granted), that one is
   * active and valid for `minValiditySec`. Otherwise undefined, with nothing recorded, and the
   * caller asks tokenFor, which loads, refreshes or says what is wrong. For the token read's
   * cached lane (TokenReadRoute); derived tokens (`api=`) always go through tokenFor.
   */
  cachedToken(account: string, provider: string | undefined, minValiditySec: number, granted?: ReadonlyArray<string>): IssuedToken | undefined {
    const now = this.clock.nowMs();
    const first = this.cache.cached(account, now);
    if (first === undefined) return undefined;
    const match = pick(first, provider, granted);
    if (match === undefined || match === SEVERAL || match.status !== ConnectionStatus.Active || expiresWithin(match, now, minValiditySec * 1000)) return undefined;
    return this.issue(match, match, now);
  }

  private serve(cached: CachedConnection, minValiditySec: number, now: number, api: string | undefined): IssuedToken | Promise<IssuedToken> {
    if (api !== undefined) return this.serveDerived(cached, api, minValiditySec * 1000, now);
    this.assertUsable(cached);
    const minValidityMs = minValiditySec * 1000;
    if (expiresWithin(cached, now, minValidityMs)) {
      return this.refreshForRead(cached, minValidityMs).then((served) => this.issue(served, cached, now));
    }
    return this.issue(cached, cached, now);
  }

  /**
   * The derived token for `api`: from the cache while it stays valid for `minValidityMs`, else
   * minted through the refresh engine (one mint per connection across replicas; a still-valid
   * token is served while minting fails transiently). Its planned re-mint ahead of expiry is the
   * sweep's, so reads normally find it fresh.
   */
  private serveDerived(cached: CachedConnection, api: string, minValidityMs: number, now: number): IssuedToken | Promise<IssuedToken> {
    const definition = providerDefinition(cached.provider as ProviderId);
    if (definition.derivedToken?.api !== api) {
      const offering = PROVIDER_DEFINITIONS.filter((d) => d.derivedToken?.api === api).map((d) => d.id);
      throw new DomainError(
        ErrorCode.ApiNotSupported,
        `${definition.displayName} has no api=${api.slice(0, 16)} token${offering.length > 0 ? `; it is for ${offering.join(', ')}` : ''}`,
      );
    }
    this.assertUsable(cached);
    if (cached.derived !== null && cached.derived.validUntil(now + minValidityMs)) return this.issueDerived(cached, cached, now);
    return this.mintForRead(cached, minValidityMs).then((served) => this.issueDerived(served, cached, now));
  }

  private issueDerived(served: CachedConnection, read: CachedConnection, now: number): IssuedToken {
    const derived = served.derived!;
    const token = derived.tokenVia((id, sealed) => this.sealer.openDerivedToken(id, sealed));
    this.usage.used(read, now);
    this.metrics.tokenRead(served.provider, 'served');
    return {
      account: served.account,
      provider: served.provider,
      accessToken: token,
      tokenType: 'Bearer',
      expiresAt: isoTime(derived.expiresAtMs!),
      scope: served.scope,
      apply: { headers: { Authorization: `Bearer ${token}` }, query: {} },
      authMode: served.authMode,
    };
  }

  /** The connection to serve a derived token from once a mint was tried, or the error that says why there is none. */
  private async mintForRead(current: CachedConnection, minValidityMs: number): Promise<CachedConnection> {
    const now = this.clock.nowMs();
    const usable = (connection: CachedConnection): boolean => connection.derived !== null && connection.derived.validUntil(this.clock.nowMs());
    if (current.authMode === AuthMode.ApiKey && current.expiresAtMs !== null && current.expiresAtMs <= now) {
      // The key it would be minted from expired: say so now, as a read of the key itself does.
      await this.refreshForRead(current, minValidityMs);
    }
    const retryAtMs = current.derived?.refreshAtMs ?? null;
    if (current.lastError && isBackingOff(current.lastError.code, retryAtMs, now)) {
      if (usable(current)) return current;
      throw this.unavailable(current, current.lastError.message, Math.ceil((retryAtMs - now) / 1000), 'derived');
    }
    const stillNeeded = (latest: ConnectionRecord): boolean =>
      !(latest.hasDerivedToken && latest.derivedExpiresAt !== null && latest.derivedExpiresAt.getTime() - this.clock.nowMs() >= minValidityMs);
    const outcome = await this.engine.refresh({ connectionId: current.id, trigger: 'read', stillNeeded, target: 'derived_token' });
    if (this.audit) auditSystemRefresh(this.audit, outcome, { connectionId: current.id, account: current.account, provider: current.provider }, 'read');
    switch (outcome.kind) {
      case 'refreshed':
      case 'fresh': {
        this.cache.invalidate(current.account);
        const latest = new CachedConnection(outcome.connection, this.clock.nowMs());
        if (usable(latest)) return latest;
        // Another renewal (of the token itself) answered this one: the derived token is still to come.
        throw this.unavailable(current, 'the token was renewed meanwhile; ask again', 1, 'derived');
      }
      case 'needs_reauth':
        this.cache.invalidate(current.account);
        this.metrics.tokenRead(current.provider, 'needs_reauth');
        throw new DomainError(
          ErrorCode.NeedsReauth,
          `${current.provider} refused the stored ${current.authMode === AuthMode.ApiKey ? 'API key' : 'token'} of ${current.account} (${outcome.message}); ${current.authMode === AuthMode.ApiKey ? ENTER_A_NEW_KEY : 'open a new connect session for the user to connect again'}`,
        );
      case 'inactive':
        this.cache.invalidate(current.account);
        throw new DomainError(
          outcome.status === ConnectionStatus.Revoked ? ErrorCode.Revoked : ErrorCode.NeedsReauth,
          `the ${current.provider} connection of ${current.account} is ${outcome.status ?? 'gone'}; open a new connect session`,
        );
      case 'not_refreshable':
        throw new DomainError(ErrorCode.ProviderNotConfigured, `this broker has no ${current.provider} authentication URL to mint the token with`);
      case 'transient':
      case 'misconfigured':
        this.cache.invalidate(current.account);
        if (usable(current)) return current;
        throw this.unavailable(current, outcome.message, outcome.kind === 'transient' ? outcome.retryAfterSec : undefined, 'derived');
      case 'unreadable':
        this.cache.invalidate(current.account);
        if (usable(current)) return current;
        throw new DomainError(ErrorCode.TokenUnreadable, `${outcome.message}; an operator must restore its encryption key`);
      case 'busy':
        if (usable(current)) return current;
        throw this.unavailable(current, 'another replica is still minting this token', 1, 'derived');
    }
  }

  /**
   * The answer for `served`; usage is recorded on the cached entry the read started from. Built
   * before anything is recorded, so that a read which fails here (an unreadable token) records
   * nothing, and the cached lane can hand it to the route (TokenReadRoute) without a double count.
   */
  private issue(served: CachedConnection, read: CachedConnection, now: number): IssuedToken {
    const accessToken = served.accessTokenVia((sealed) => this.sealer.openServed(sealed));
    const definition = providerDefinition(served.provider as ProviderId);
    const answer: IssuedToken = {
      account: served.account,
      provider: served.provider,
      accessToken,
      tokenType: served.tokenType,
      expiresAt: served.expiresAtMs !== null ? isoTime(served.expiresAtMs) : null,
      scope: served.scope,
      apply:
        served.authMode === AuthMode.ApiKey
          ? definition.staticCredential.present({ apiKey: accessToken, userEmail: served.credentialUserEmail })
          : presentToken(definition, accessToken),
      authMode: served.authMode,
    };
    this.usage.used(read, now);
    this.metrics.tokenRead(served.provider, 'served');
    return answer;
  }

  /** The connection to serve among the account's (`first` and those chained to it; null: none), or the error that says why there is none. */
  private choose(account: string, provider: string | undefined, first: CachedConnection | null, granted: ReadonlyArray<string> | undefined): CachedConnection {
    if (provider !== undefined && !isProviderId(provider)) throw unknownProviderError(provider);
    const match = pick(first, provider, granted);
    if (match === undefined) {
      throw new DomainError(ErrorCode.ConnectionNotFound, provider !== undefined ? `account ${account} has no ${provider} connection` : `account ${account} has no connection`);
    }
    if (match === SEVERAL) {
      const providers = connectionsFrom(first)
        .map((c) => c.provider)
        .filter((p) => granted === undefined || granted.includes(p));
      throw new DomainError(ErrorCode.ProviderAmbiguous, `account ${account} has several connections (${providers.join(', ')}); say which with ?provider=`, {
        providers,
      });
    }
    return match;
  }

  private assertUsable(record: CachedConnection): void {
    if (record.status === ConnectionStatus.Active) return;
    const reconnect = record.authMode === AuthMode.ApiKey ? ENTER_A_NEW_KEY : 'open a new connect session (POST /connect-sessions) for the user to connect again';
    if (record.status === ConnectionStatus.Revoked) {
      this.metrics.tokenRead(record.provider, 'revoked');
      throw new DomainError(ErrorCode.Revoked, `the ${record.provider} connection of ${record.account} was revoked; ${reconnect}`);
    }
    this.metrics.tokenRead(record.provider, 'needs_reauth');
    throw new DomainError(
      ErrorCode.NeedsReauth,
      `the ${record.provider} connection of ${record.account} needs the user to authorise again${record.lastError ? ` (${record.lastError.code})` : ''}; ${reconnect}`,
      record.authMode === AuthMode.ApiKey && record.lastError ? { reason: record.lastError.code } : undefined,
    );
  }

  /** The connection to serve once a refresh was tried, or the error that says why there is none. */
  private async refreshForRead(current: CachedConnection, minValidityMs: number): Promise<CachedConnection> {
    const record = current;
    const now = this.clock.nowMs();
    const stillValid = record.expiresAtMs !== null && record.expiresAtMs > now;
    if (record.authMode === AuthMode.ApiKey) {
      // A static credential is never refreshed: served while it lasts, needs_reauth from the moment it expires
      // (the sweep flags the row too, but a read must not wait for it).
      if (stillValid) return current;
      this.metrics.tokenRead(record.provider, 'needs_reauth');
      throw new DomainError(
        ErrorCode.NeedsReauth,
        `the ${record.provider} API key of ${record.account} expired at ${new Date(record.expiresAtMs!).toISOString()} (${ConnectionErrorCode.CredentialExpired}); ${ENTER_A_NEW_KEY}`,
        { reason: ConnectionErrorCode.CredentialExpired },
      );
    }
    // A recent failure set a retry time: do not hammer a provider that is down. This is the
    // engine's own rule (isBackingOff), applied to the cached row so it costs no database trip.
    if (record.lastError && isBackingOff(record.lastError.code, record.nextRefreshAtMs, now)) {
      if (stillValid) return current;
      throw this.unavailable(record, record.lastError.message, Math.ceil((record.nextRefreshAtMs - now) / 1000));
    }

    const needsRefresh = (latest: ConnectionRecord): boolean => latest.expiresAt !== null && latest.expiresAt.getTime() - this.clock.nowMs() < minValidityMs;
    const outcome = await this.engine.refresh({ connectionId: record.id, trigger: 'read', stillNeeded: needsRefresh });
    if (this.audit) auditSystemRefresh(this.audit, outcome, { connectionId: record.id, account: record.account, provider: record.provider }, 'read');
    switch (outcome.kind) {
      case 'refreshed':
      case 'fresh':
        this.cache.invalidate(record.account);
        return new CachedConnection(outcome.connection, this.clock.nowMs());
      case 'not_refreshable':
        if (stillValid) return new CachedConnection(outcome.connection, this.clock.nowMs());
        throw new DomainError(ErrorCode.NeedsReauth, `the ${record.provider} token of ${record.account} has expired and cannot be refreshed; open a new connect session`);
      case 'needs_reauth':
        this.cache.invalidate(record.account);
        throw new DomainError(ErrorCode.NeedsReauth, `${record.provider} refused to refresh the token of ${record.account} (invalid_grant); open a new connect session for the user to connect again`);
      case 'inactive':
        this.cache.invalidate(record.account);
        throw new DomainError(
          outcome.status === ConnectionStatus.Revoked ? ErrorCode.Revoked : ErrorCode.NeedsReauth,
          `the ${record.provider} connection of ${record.account} is ${outcome.status ?? 'gone'}; open a new connect session`,
        );
      case 'misconfigured':
        this.cache.invalidate(record.account);
        if (stillValid) return current;
        throw new DomainError(ErrorCode.ProviderMisconfigured, `${record.provider} rejected the broker's client configuration; an operator must fix it`);
      case 'transient':
        // The row now carries the failure and its retry time; reload it on the next read.
        this.cache.invalidate(record.account);
        if (stillValid) return current;
        throw this.unavailable(record, outcome.message, outcome.retryAfterSec);
      case 'unreadable':
        // The key ring cannot open the stored refresh token; the access token was opened to be cached, so it may still serve.
        this.cache.invalidate(record.account);
        if (stillValid) return current;
        throw new DomainError(ErrorCode.TokenUnreadable, `the ${record.provider} token of ${record.account} has expired and its refresh token cannot be opened; an operator must restore its encryption key`);
      case 'busy':
        if (stillValid) return current;
        throw this.unavailable(record, 'another replica is still refreshing this token', 1);
    }
  }

  private unavailable(record: CachedConnection, message: string, retryAfterSec?: number, which: 'token' | 'derived' = 'token'): DomainError {
    this.metrics.tokenRead(record.provider, 'unavailable');
    return new DomainError(
      ErrorCode.ProviderUnavailable,
      which === 'derived'
        ? `no valid ${record.provider} derived token for ${record.account} could be minted now: ${message}`
        : `the ${record.provider} token of ${record.account} has expired and could not be refreshed: ${message}`,
      retryAfterSec !== undefined ? { retryAfter: retryAfterSec } : undefined,
    );
  }
}
