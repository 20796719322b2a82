import { Clock, DomainError, ErrorCode } from '@app/common';
import { AppConfig } from '@app/config';
import { ConnectionRecord, ConnectionRepository, ConnectionStatus, SealedConnection } from '@app/connections';
import { Metrics } from '@app/observability';
import { isProviderId, presentToken, providerDefinition, TokenPresentation } from '@app/providers';
import { RefreshEngine } from '@app/refresh';
import { Injectable } from '@nestjs/common';
import { ConnectionCache } from './connection-cache';
import { UsageRecorder } from './usage-recorder';

export const DEFAULT_MIN_VALIDITY_SEC = 60;
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
}

/**
 * GET /tokens/:account: a token valid for at least `minValidity` seconds, refreshed first when
 * needed. The hot path is a cache hit plus one decryption; it never writes to the database.
 */
@Injectable()
export class TokenService {
  constructor(
    private readonly cache: ConnectionCache,
    private readonly connections: ConnectionRepository,
    private readonly engine: RefreshEngine,
    private readonly usage: UsageRecorder,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    private readonly config: AppConfig,
  ) {}

  async tokenFor(account: string, provider: string | undefined, minValiditySec: number): Promise<IssuedToken> {
    const now = this.clock.nowMs();
    const found = this.choose(account, provider, await this.cache.forAccount(account, now));
    let sealed = found;
    const needsRefresh = (record: ConnectionRecord): boolean =>
      record.expiresAt !== null && record.expiresAt.getTime() - this.clock.nowMs() < minValiditySec * 1000;

    this.assertUsable(sealed.record);
    if (needsRefresh(sealed.record)) sealed = await this.refreshForRead(sealed, needsRefresh);

    const accessToken = this.connections.openAccessToken(sealed);
    this.usage.used(sealed.record.id);
    this.metrics.tokenReads.inc({ provider: sealed.record.provider, outcome: 'served' });
    const record = sealed.record;
    return {
      account: record.account,
      provider: record.provider,
      accessToken,
      tokenType: record.tokenType ?? 'Bearer',
      expiresAt: record.expiresAt ? record.expiresAt.toISOString() : null,
      scope: record.scope,
      apply: presentToken(providerDefinition(record.provider as never), accessToken),
    };
  }

  private choose(account: string, provider: string | undefined, connections: SealedConnection[]): SealedConnection {
    if (provider !== undefined && !isProviderId(provider)) {
      throw new DomainError(ErrorCode.ProviderUnknown, `unknown provider "${provider.slice(0, 40)}"; known: copper, copernica, copyai`);
    }
    if (provider !== undefined) {
      const match = connections.find((c) => c.record.provider === provider);
      if (!match) throw new DomainError(ErrorCode.ConnectionNotFound, `account ${account} has no ${provider} connection`);
      return match;
    }
    if (connections.length === 0) throw new DomainError(ErrorCode.ConnectionNotFound, `account ${account} has no connection`);
    if (connections.length > 1) {
      const providers = connections.map((c) => c.record.provider);
      throw new DomainError(ErrorCode.ProviderAmbiguous, `account ${account} has several connections (${providers.join(', ')}); say which with ?provider=`, {
        providers,
      });
    }
    return connections[0];
  }

  private assertUsable(record: ConnectionRecord): void {
    if (record.status === ConnectionStatus.Active) return;
    const reconnect = 'open a new connect session (POST /connect-sessions) for the user to connect again';
    if (record.status === ConnectionStatus.Revoked) {
      this.metrics.tokenReads.inc({ provider: record.provider, outcome: 'revoked' });
      throw new DomainError(ErrorCode.Revoked, `the ${record.provider} connection of ${record.account} was revoked; ${reconnect}`);
    }
    this.metrics.tokenReads.inc({ provider: record.provider, outcome: 'needs_reauth' });
    throw new DomainError(
      ErrorCode.NeedsReauth,
      `the ${record.provider} connection of ${record.account} needs the user to authorise again${record.lastError ? ` (${record.lastError.code})` : ''}; ${reconnect}`,
    );
  }

  private async refreshForRead(current: SealedConnection, needsRefresh: (record: ConnectionRecord) => boolean): Promise<SealedConnection> {
    const record = current.record;
    const now = this.clock.nowMs();
    const stillValid = record.expiresAt !== null && record.expiresAt.getTime() > now;
    // A recent failure set a retry time: do not hammer a provider that is down.
    const backingOff = record.lastError !== null && record.nextRefreshAt !== null && record.nextRefreshAt.getTime() > now;
    if (backingOff && record.lastError?.code !== 'invalid_grant') {
      if (stillValid) return current;
      throw this.unavailable(record, record.lastError?.message ?? 'the provider failed recently', Math.ceil((record.nextRefreshAt!.getTime() - now) / 1000));
    }

    const outcome = await this.engine.refresh(record.id, 'read', needsRefresh);
    switch (outcome.kind) {
      case 'refreshed':
      case 'fresh':
        this.cache.invalidate(record.account);
        return outcome.connection;
      case 'not_refreshable':
        if (stillValid) return outcome.connection;
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
      case 'busy':
        if (stillValid) return current;
        throw this.unavailable(record, 'another replica is still refreshing this token', 1);
    }
  }

  private unavailable(record: ConnectionRecord, message: string, retryAfterSec?: number): DomainError {
    this.metrics.tokenReads.inc({ provider: record.provider, outcome: 'unavailable' });
    return new DomainError(
      ErrorCode.ProviderUnavailable,
      `the ${record.provider} token of ${record.account} has expired and could not be refreshed: ${message}`,
      retryAfterSec !== undefined ? { retryAfter: retryAfterSec } : undefined,
    );
  }
}
