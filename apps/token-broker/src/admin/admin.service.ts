import { Caller } from '@app/auth';
import { DomainError, ErrorCode } from '@app/common';
import { AppConfig } from '@app/config';
import { ConnectionRecord, ConnectionRepository, ConnectionStatus } from '@app/connections';
import { isProviderId, PROVIDER_IDS, providerDefinition, ProviderId } from '@app/providers';
import { RefreshEngine, RefreshOutcome } from '@app/refresh';
import { ConnectionCache } from '@app/tokens';
import { Injectable, Logger } from '@nestjs/common';
import { ListQuery } from './admin-query';
import {
  ConnectionPageDto,
  ConnectionViewDto,
  MAX_FAILED_ACCOUNTS,
  RefreshResponseDto,
  RevokeAllResponseDto,
  RevokeResponseDto,
  toConnectionView,
} from './admin.dto';
import { ConnectionRevoker, RevocationReport } from './connection-revoker';

/** Connections revoked side by side by revoke-all (each is two provider calls and one write). */
export const REVOKE_ALL_CONCURRENCY = 8;
const REVOKE_ALL_PAGE = 100;
/** Statuses whose rows may still hold tokens: everything but revoked. */
const HOLDING_TOKENS: ReadonlyArray<ConnectionStatus> = [ConnectionStatus.Active, ConnectionStatus.NeedsReauth, ConnectionStatus.Error];

/**
 * The /admin use cases: look at connections, revoke one or all of a provider's, refresh one now.
 * Never returns or logs a token (guarantee 2): answers are built from ConnectionRecord, which
 * holds none, and provider failures are reported by their (secret-free) messages. Every action
 * that changes something writes one audit line naming the admin key.
 */
@Injectable()
export class AdminService {
  private readonly audit = new Logger('AdminAudit');

  constructor(
    private readonly config: AppConfig,
    private readonly connections: ConnectionRepository,
    private readonly revoker: ConnectionRevoker,
    private readonly engine: RefreshEngine,
    private readonly cache: ConnectionCache,
  ) {}

  async list({ filter, cursor, limit }: ListQuery): Promise<ConnectionPageDto> {
    const page = await this.connections.list(filter, cursor, limit);
    return { items: page.items.map(toConnectionView), nextCursor: page.nextCursor };
  }

  async get(account: string, provider: ProviderId | undefined): Promise<ConnectionViewDto> {
    return toConnectionView(await this.resolve(account, provider));
  }

  async revoke(caller: Caller, account: string, provider: ProviderId | undefined): Promise<RevokeResponseDto> {
    const record = await this.resolve(account, provider);
    const result = await this.revoker.revoke(record.id);
    if (!result) throw notFound(account, record.provider);
    const message = revocationMessage(result);
    this.audit.log(
      {
        action: 'revoke',
        caller: caller.name,
        account,
        provider: record.provider,
        alreadyRevoked: result.alreadyRevoked,
        accessTokenAtProvider: result.accessToken,
        refreshTokenAtProvider: result.refreshToken,
        erasedLocally: result.erasedLocally,
      },
      `admin ${caller.name} revoked the ${record.provider} connection of ${account}: ${message}`,
    );
    return {
      account,
      provider: record.provider,
      alreadyRevoked: result.alreadyRevoked,
      atProvider: { accessToken: result.accessToken, refreshToken: result.refreshToken, error: result.providerError },
      erasedLocally: result.erasedLocally,
      message,
      connection: toConnectionView(result.connection),
    };
  }

  /**
   * Refreshes now, whatever the token's expiry and any backoff: the admin asked for it. Outcomes
   * other than new tokens become domain errors (see README: 409, 502, 503) carrying `outcome`.
   */
  async refresh(caller: Caller, account: string, provider: ProviderId | undefined): Promise<RefreshResponseDto> {
    const record = await this.resolve(account, provider);
    let outcome: RefreshOutcome;
    try {
      outcome = await this.engine.refresh(record.id, 'admin', () => true);
    } finally {
      this.cache.invalidate(account);
    }
    this.audit.log(
      { action: 'refresh', caller: caller.name, account, provider: record.provider, outcome: outcome.kind },
      `admin ${caller.name} refreshed the ${record.provider} connection of ${account}: ${outcome.kind}`,
    );
    return this.refreshAnswer(record, outcome);
  }

  /**
   * Revokes every connection of a provider that still holds tokens (active, needs_reauth), a few
   * at a time. Revoked rows are skipped, so calling it again resumes an interrupted run and a
   * second concurrent call only finds what the first has not reached.
   */
  async revokeAll(caller: Caller, provider: string): Promise<RevokeAllResponseDto> {
    if (!isProviderId(provider)) {
      throw new DomainError(ErrorCode.ProviderNotFound, `unknown provider "${provider.slice(0, 40)}"; known: ${PROVIDER_IDS.join(', ')}`);
    }
    if (!this.config.providers[provider]) {
      const prefix = providerDefinition(provider).envPrefix;
      throw new DomainError(ErrorCode.ProviderNotFound, `${provider} is not configured on this broker (${prefix}_CLIENT_ID is unset)`);
    }
    const counts = { processed: 0, revokedAtProvider: 0, notSupported: 0, failedAtProvider: 0, erased: 0, alreadyRevoked: 0 };
    const failedAccounts: string[] = [];
    const tally = (result: RevocationReport | null): void => {
      if (!result) return;
      counts.processed++;
      if (result.alreadyRevoked) {
        counts.alreadyRevoked++;
        return;
      }
      if (result.erasedLocally) counts.erased++;
      const outcomes = [result.accessToken, result.refreshToken];
      if (outcomes.includes('failed')) {
        counts.failedAtProvider++;
        if (failedAccounts.length < MAX_FAILED_ACCOUNTS) failedAccounts.push(result.connection.account);
      } else if (outcomes.includes('revoked')) {
        counts.revokedAtProvider++;
      } else if (outcomes.includes('not_supported')) {
        counts.notSupported++;
      }
    };

    for (const status of HOLDING_TOKENS) {
      let cursor: string | null = null;
      do {
        const page = await this.connections.list({ provider, status }, cursor, REVOKE_ALL_PAGE);
        await forEachBounded(page.items, REVOKE_ALL_CONCURRENCY, async (record) => tally(await this.revoker.revoke(record.id)));
        cursor = page.nextCursor;
      } while (cursor);
    }

    const name = providerDefinition(provider).displayName;
    const message =
      counts.processed === 0
        ? `no ${name} connection holds tokens; nothing to revoke`
        : `${counts.erased} ${name} connection(s) erased locally: ${counts.revokedAtProvider} revoked at ${name}, ` +
          `${counts.notSupported} without a revocation endpoint, ${counts.failedAtProvider} not confirmed by ${name}`;
    this.audit.log({ action: 'revoke-all', caller: caller.name, provider, ...counts }, `admin ${caller.name} revoked all ${provider} connections: ${message}`);
    return { provider, ...counts, failedAccounts, message };
  }

  /** The one connection meant: `provider` may be left out when the account has a single one (as GET /tokens). */
  private async resolve(account: string, provider: ProviderId | undefined): Promise<ConnectionRecord> {
    if (provider !== undefined) {
      const record = await this.connections.findOne(account, provider);
      if (!record) throw notFound(account, provider);
      return record;
    }
    const records = await this.connections.findByAccount(account);
    if (records.length === 0) throw notFound(account);
    if (records.length > 1) {
      const providers = records.map((r) => r.provider);
      throw new DomainError(ErrorCode.ProviderAmbiguous, `account ${account} has several connections (${providers.join(', ')}); say which with ?provider=`, {
        providers,
      });
    }
    return records[0];
  }

  private refreshAnswer(record: ConnectionRecord, outcome: RefreshOutcome): RefreshResponseDto {
    const { account, provider } = record;
    const reconnect = 'open a new connect session (POST /connect-sessions) for the user to connect again';
    const fail = (code: ErrorCode, message: string, details: Record<string, unknown> = {}): DomainError =>
      new DomainError(code, message, { outcome: outcome.kind, ...details });
    switch (outcome.kind) {
      case 'refreshed':
      case 'fresh': {
        const current = outcome.connection.record;
        return {
          account,
          provider,
          outcome: outcome.kind === 'refreshed' ? 'refreshed' : 'superseded',
          expiresAt: current.expiresAt ? current.expiresAt.toISOString() : null,
          message:
            outcome.kind === 'refreshed'
              ? `new tokens obtained from ${provider} and stored`
              : `another writer (a refresh or a reconnect) stored newer tokens meanwhile; those stand`,
          connection: toConnectionView(current),
        };
      }
      case 'not_refreshable':
        throw fail(
          ErrorCode.NotRefreshable,
          `the ${provider} connection of ${account} has no refresh token (${provider} issued none); only a reconnect gives it a new token`,
        );
      case 'needs_reauth':
        throw fail(ErrorCode.NeedsReauth, `${provider} refused to refresh the token of ${account} (${outcome.message}); ${reconnect}`);
      case 'inactive':
        if (outcome.status === null) throw notFound(account, provider);
        throw fail(
          (outcome.status as ConnectionStatus) === ConnectionStatus.Revoked ? ErrorCode.Revoked : ErrorCode.NeedsReauth,
          `the ${provider} connection of ${account} is ${outcome.status}, so it cannot be refreshed; ${reconnect}`,
          { status: outcome.status },
        );
      case 'transient':
        throw fail(
          ErrorCode.ProviderUnavailable,
          `${provider} could not refresh the token of ${account} now: ${outcome.message}`,
          outcome.retryAfterSec !== undefined ? { retryAfter: outcome.retryAfterSec } : {},
        );
      case 'misconfigured':
        throw fail(ErrorCode.ProviderMisconfigured, `${outcome.message}; the connection is untouched, an operator must fix the configuration`);
      case 'unreadable':
        throw fail(ErrorCode.TokenUnreadable, `${outcome.message}; the connection is untouched until TOKEN_ENCRYPTION_KEYS holds its key again`);
      case 'busy':
        throw fail(ErrorCode.RefreshInProgress, `another replica has been refreshing the ${provider} token of ${account} for too long; try again shortly`, {
          retryAfter: 5,
        });
    }
  }
}

function notFound(account: string, provider?: string): DomainError {
  return new DomainError(ErrorCode.ConnectionNotFound, provider ? `account ${account} has no ${provider} connection` : `account ${account} has no connection`);
}

function revocationMessage(result: RevocationReport): string {
  const { provider, account } = result.connection;
  const name = isProviderId(provider) ? providerDefinition(provider).displayName : provider;
  if (result.alreadyRevoked) return `the ${provider} connection of ${account} was already revoked; no tokens were left to revoke or erase`;
  const outcomes = [result.accessToken, result.refreshToken];
  if (outcomes.includes('failed')) {
    return (
      `${name} did not confirm the revocation (${result.providerError ?? 'no reason given'}). The tokens were erased locally anyway; ` +
      `they can no longer be revoked from here and may stay valid at ${name} until they expire or the user removes the app's access there`
    );
  }
  if (outcomes.includes('not_supported')) {
    return (
      `${name} offers no revocation endpoint, so nothing was sent to it; the tokens were erased locally. ` +
      `To invalidate them at ${name} too, the user (or an admin of their ${name} account) must remove the app's access there`
    );
  }
  if (outcomes.includes('revoked')) return `revoked at ${name} and erased locally`;
  return 'no tokens were stored; the connection is now marked revoked';
}

/** Runs `work` over `items`, at most `concurrency` at a time; the first failure stops new work and is rethrown. */
async function forEachBounded<T>(items: ReadonlyArray<T>, concurrency: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { error: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (!failure && next < items.length) {
      const item = items[next++];
      try {
        await work(item);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  if (failure) throw failure.error;
}
