import { AuditRepository } from '@app/audit';
import { Caller } from '@app/auth';
import { assertAccountId, Clock, DomainError, ErrorCode } from '@app/common';
import { AppConfig } from '@app/config';
import { AuthMode, ConnectionListRepository, ConnectionRecord, ConnectionRepository, ConnectionStatus, toConnectionView } from '@app/connections';
import { AuditLog } from '@app/observability';
import { isProviderId, providerDefinition, ProviderId, unknownProviderMessage } from '@app/providers';
import { RefreshEngine, RefreshOutcome } from '@app/refresh';
import { StaticCredentialService, StoredCredential } from '@app/credentials';
import { ConnectionRevoker, RevocationReport } from '@app/revocation';
import { ConnectionCache } from '@app/tokens';
import { WebhookDeliveryRepository, WebhookDispatcher } from '@app/webhooks';
import { Injectable } from '@nestjs/common';
import { errorCodeOf } from '../http/error.filter';
import { assertNoQuery, DELIVERY_ID, parseAuditQuery, parseDeliveryQuery, parseListQuery, parseProviderQuery } from './admin-query';
import {
  AuditPageDto,
  ConnectionPageDto,
  ConnectionViewDto,
  CredentialStoredDto,
  MAX_FAILED_ACCOUNTS,
  RefreshResponseDto,
  RevokeAllResponseDto,
  RevokeResponseDto,
  toAuditItem,
  WebhookDeliveryDto,
  WebhookDeliveryPageDto,
} from './admin.dto';

/** Connections revoked side by side by revoke-all (each is two provider calls and one write). */
export const REVOKE_ALL_CONCURRENCY = 8;
const REVOKE_ALL_PAGE = 100;
/** Statuses whose rows may still hold tokens: everything but revoked. */
const HOLDING_TOKENS: ReadonlyArray<ConnectionStatus> = [ConnectionStatus.Active, ConnectionStatus.NeedsReauth];

/** Who asks, for the audit record: the admin key (its name is recorded, never its secret) and the request id. */
export interface AdminRequest {
  caller: Caller;
  requestId: string;
}

/** The audit actions of /admin (DESIGN, "Audit trail"). */
type AdminAction =
  | 'connections.list'
  | 'connections.get'
  | 'connection.revoke'
  | 'connection.refresh'
  | 'provider.revoke_all'
  | 'audit.list'
  | 'credential.store'
  | 'webhooks.list'
  | 'webhook.retry';

/** What an admin action learns about its own audit record while it runs. */
interface AuditDraft {
  account?: string;
  provider?: string;
  /** What a success is recorded as; a failure is recorded as the error code it is answered with, unless `failedAs` says otherwise. */
  outcome: string;
  failedAs?: string;
  detail?: Record<string, unknown>;
}

/**
 * The /admin use cases: look at connections, revoke one or all of a provider's, refresh one now;
 * read the audit trail and the webhook deliveries, retry a delivery given up.
 * Never returns or logs a token (guarantee 2): answers are built from ConnectionRecord, which
 * holds none, and provider failures are reported by their (secret-free) messages.
 *
 * Every call is audited, success or failure, input errors included: each method takes the
 * route's raw input and validates it inside `audited`, whose `finally` records the outcome
 * through AuditLog (at a level LOG_LEVEL does not filter).
 */
@Injectable()
export class AdminService {
  constructor(
    private readonly config: AppConfig,
    private readonly connections: ConnectionRepository,
    private readonly listing: ConnectionListRepository,
    private readonly revoker: ConnectionRevoker,
    private readonly engine: RefreshEngine,
    private readonly cache: ConnectionCache,
    private readonly credentials: StaticCredentialService,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly auditTrail: AuditRepository,
    private readonly webhookDeliveryRows: WebhookDeliveryRepository,
    private readonly webhooks: WebhookDispatcher,
  ) {}

  /** The audit trail, newest first: what GET /admin/audit answers. Reading it is audited too. */
  async auditRecords(asking: AdminRequest, query: Record<string, unknown>): Promise<AuditPageDto> {
    return this.audited(asking, 'audit.list', { account: rawString(query.account), provider: rawString(query.provider) }, async (draft) => {
      const { filter, cursor, limit } = parseAuditQuery(query);
      const page = await this.auditTrail.list(filter, cursor, limit);
      draft.detail = { actor: filter.actor ?? null, action: filter.action ?? null, returned: page.items.length };
      return { items: page.items.map(toAuditItem), nextCursor: page.nextCursor };
    });
  }

  async webhookDeliveries(asking: AdminRequest, query: Record<string, unknown>): Promise<WebhookDeliveryPageDto> {
    return this.audited(asking, 'webhooks.list', { account: rawString(query.account) }, async (draft) => {
      const { filter, cursor, limit } = parseDeliveryQuery(query);
      // One more than the page: whether a next page exists without a count.
      const rows = await this.webhookDeliveryRows.list({ ...filter, before: cursor ?? undefined }, limit + 1);
      const items = rows.slice(0, limit);
      draft.detail = { status: filter.status ?? null, type: filter.type ?? null, returned: items.length };
      return { items, nextCursor: rows.length > limit ? items[items.length - 1].id : null };
    });
  }

  async retryWebhookDelivery(asking: AdminRequest, id: string, query: Record<string, unknown>): Promise<WebhookDeliveryDto> {
    return this.audited(asking, 'webhook.retry', {}, async (draft) => {
      assertNoQuery(query);
      if (!DELIVERY_ID.test(id)) throw new DomainError(ErrorCode.ValidationFailed, 'a delivery id is a whole number (the id of GET /admin/webhook-deliveries)');
      draft.detail = { deliveryId: id };
      const outcome = await this.webhookDeliveryRows.retry(id);
      if (outcome === null) throw new DomainError(ErrorCode.DeliveryNotFound, `no webhook delivery ${id}`);
      if ('status' in outcome) {
        throw new DomainError(ErrorCode.DeliveryNotFailed, `webhook delivery ${id} is ${outcome.status}; only a failed delivery can be retried`, { status: outcome.status });
      }
      draft.account = outcome.retried.account ?? undefined;
      draft.provider = outcome.retried.provider;
      this.webhooks.wake();
      return outcome.retried;
    });
  }

  async list(asking: AdminRequest, query: Record<string, unknown>): Promise<ConnectionPageDto> {
    return this.audited(asking, 'connections.list', { provider: rawString(query.provider) }, async (draft) => {
      const { filter, cursor, limit } = parseListQuery(query);
      const page = await this.listing.list(filter, cursor, limit);
      draft.detail = { status: filter.status ?? null, returned: page.items.length };
      const nowMs = this.clock.nowMs();
      return { items: page.items.map((record) => toConnectionView(record, nowMs)), nextCursor: page.nextCursor };
    });
  }

  async get(asking: AdminRequest, account: string, query: Record<string, unknown>): Promise<ConnectionViewDto> {
    return this.audited(asking, 'connections.get', { account, provider: rawString(query.provider) }, async (draft) => {
      const record = await this.resolve(account, query, draft);
      return toConnectionView(record, this.clock.nowMs());
    });
  }

  async revoke(asking: AdminRequest, account: string, query: Record<string, unknown>): Promise<RevokeResponseDto> {
    return this.audited(asking, 'connection.revoke', { account, provider: rawString(query.provider) }, async (draft) => {
      const record = await this.resolve(account, query, draft);
      const result = await this.revoker.revoke(record.id, 'connection.revoke');
      if (!result) throw notFound(account, record.provider);
      draft.outcome = result.alreadyRevoked ? 'already_revoked' : 'revoked';
      draft.detail = {
        accessTokenAtProvider: result.accessToken,
        refreshTokenAtProvider: result.refreshToken,
        erasedLocally: result.erasedLocally,
        providerError: result.providerError,
      };
      return {
        account,
        provider: record.provider,
        alreadyRevoked: result.alreadyRevoked,
        atProvider: { accessToken: result.accessToken, refreshToken: result.refreshToken, error: result.providerError },
        erasedLocally: result.erasedLocally,
        message: revocationMessage(result),
        connection: toConnectionView(result.connection),
      };
    });
  }

  /**
   * Refreshes now, whatever the token's expiry and any backoff: the admin asked for it. Outcomes
   * other than new tokens become domain errors (see README: 409, 502, 503) carrying `outcome`.
   */
  async refresh(asking: AdminRequest, account: string, query: Record<string, unknown>): Promise<RefreshResponseDto> {
    return this.audited(asking, 'connection.refresh', { account, provider: rawString(query.provider) }, async (draft) => {
      const record = await this.resolve(account, query, draft);
      let outcome: RefreshOutcome;
      try {
        outcome = await this.engine.refresh({ connectionId: record.id, trigger: 'admin', stillNeeded: () => true });
      } finally {
        this.cache.invalidate(account);
      }
      draft.detail = { refreshOutcome: outcome.kind };
      const answer = this.refreshAnswer(record, outcome);
      draft.outcome = answer.outcome;
      return answer;
    });
  }

  /**
   * Stores a static credential (API key) for the account, checked with the provider first unless
   * `verify: false`; it replaces whatever the connection held (an OAuth grant is revoked at the
   * provider first, where it can be). `?provider=` is required: the connection may not exist yet.
   */
  async storeCredential(asking: AdminRequest, account: string, query: Record<string, unknown>, body: unknown): Promise<CredentialStoredDto> {
    return this.audited(asking, 'credential.store', { account, provider: rawString(query.provider) }, async (draft) => {
      assertAccountId(account);
      const provider = parseProviderQuery(query);
      if (provider === undefined) throw new DomainError(ErrorCode.ValidationFailed, 'provider is required: say which provider the key is for with ?provider=');
      const input = this.credentials.parse(provider, body);
      let stored: StoredCredential;
      try {
        stored = await this.credentials.store(account, provider, input);
      } catch (error) {
        if (error instanceof DomainError && error.code === ErrorCode.CredentialRejected) draft.failedAs = 'rejected';
        throw error;
      }
      draft.outcome = 'stored';
      draft.detail = {
        verification: stored.verification,
        expiresAt: input.expiresAt?.toISOString() ?? null,
        replacedGrant: stored.replacedGrant ? { accessToken: stored.replacedGrant.accessToken, refreshToken: stored.replacedGrant.refreshToken } : null,
      };
      const replacedGrant = stored.replacedGrant
        ? { accessToken: stored.replacedGrant.accessToken, refreshToken: stored.replacedGrant.refreshToken, error: stored.replacedGrant.errors.join('; ') || null }
        : null;
      return { ...toConnectionView(stored.connection, this.clock.nowMs()), verification: stored.verification, replacedGrant };
    });
  }

  /**
   * Revokes every connection of a provider that still holds tokens (active, needs_reauth), a few
   * at a time. Revoked rows are skipped, so calling it again resumes an interrupted run and a
   * second concurrent call only finds what the first has not reached.
   */
  async revokeAll(asking: AdminRequest, provider: string, query: Record<string, unknown>): Promise<RevokeAllResponseDto> {
    return this.audited(asking, 'provider.revoke_all', { provider }, async (draft) => {
      assertNoQuery(query);
      if (!isProviderId(provider)) {
        throw new DomainError(ErrorCode.ProviderNotFound, unknownProviderMessage(provider));
      }
      if (!this.config.providers[provider]) {
        const prefix = providerDefinition(provider).envPrefix;
        throw new DomainError(ErrorCode.ProviderNotFound, `${provider} is not configured on this broker (${prefix}_CLIENT_ID is unset)`);
      }
      const counts = { processed: 0, revokedAtProvider: 0, notSupported: 0, failedAtProvider: 0, erased: 0, alreadyRevoked: 0 };
      // The same object: a run that fails half-way is recorded with what it had done.
      draft.detail = counts;
      draft.outcome = 'revoked';
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
          const page = await this.listing.list({ provider, status }, cursor, REVOKE_ALL_PAGE);
          await forEachBounded(page.items, REVOKE_ALL_CONCURRENCY, async (record) => tally(await this.revoker.revoke(record.id, 'provider.revoke_all')));
          cursor = page.nextCursor;
        } while (cursor);
      }

      const name = providerDefinition(provider).displayName;
      const message =
        counts.processed === 0
          ? `no ${name} connection holds tokens; nothing to revoke`
          : `${counts.erased} ${name} connection(s) erased locally: ${counts.revokedAtProvider} revoked at ${name}, ` +
            `${counts.notSupported} without a revocation endpoint, ${counts.failedAtProvider} not confirmed by ${name}`;
      return { provider, ...counts, failedAccounts, message };
    });
  }

  /**
   * Runs one admin action and records its audit line in `finally`: the draft's outcome when it
   * succeeds, the code the caller is answered with when it throws (the error goes on unchanged).
   */
  private async audited<T>(asking: AdminRequest, action: AdminAction, target: { account?: string; provider?: string }, work: (draft: AuditDraft) => Promise<T>): Promise<T> {
    const draft: AuditDraft = { ...target, outcome: 'ok' };
    try {
      return await work(draft);
    } catch (error) {
      draft.outcome = draft.failedAs ?? errorCodeOf(error);
      throw error;
    } finally {
      this.audit.record({
        action,
        actor: asking.caller.name,
        actorKind: 'admin',
        account: draft.account ?? null,
        provider: draft.provider ?? null,
        outcome: draft.outcome,
        requestId: asking.requestId,
        detail: draft.detail,
      });
    }
  }

  /**
   * The one connection meant, from the route's raw account and `?provider=` (validated here);
   * `provider` may be left out when the account has a single one (as GET /tokens). The draft
   * learns the connection's provider once it is known.
   */
  private async resolve(account: string, query: Record<string, unknown>, draft: AuditDraft): Promise<ConnectionRecord> {
    assertAccountId(account);
    const provider: ProviderId | undefined = parseProviderQuery(query);
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
    draft.provider = records[0].provider;
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
        if (record.authMode === AuthMode.ApiKey) {
          throw fail(ErrorCode.NotRefreshable, `the ${provider} connection of ${account} holds an API key, which is never refreshed; store a new key to replace it`);
        }
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

/** A query value as given, for the audit record of a request whose input may not be valid. */
function rawString(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
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
