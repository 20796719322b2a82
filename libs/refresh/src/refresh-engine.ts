import { Clock } from '@app/common';
import { AppConfig } from '@app/config';
import {
  AuthMode,
  ConnectionErrorCode,
  ConnectionRecord,
  ConnectionRefreshRepository,
  ConnectionRepository,
  ConnectionSealer,
  ConnectionStatus,
  ConnectionUnreadableError,
  SealedConnection,
  TokenSet,
} from '@app/connections';
import { Metrics } from '@app/observability';
import { PROVIDER_TIMEOUT_MS, ProviderClient, providerDefinition, ProviderError, ProviderId } from '@app/providers';
import { Inject, Injectable, Logger, Optional } from '@nestjs/common';
import { backoffDelayMs, isBackingOff, MISCONFIGURED_RETRY_MS } from './backoff';
import { issuedTokenSet } from './issued-token-set';
import { JITTER_RANDOM, RefreshPlanner } from './refresh-planner';
import { Lease, RefreshLeases } from './refresh-leases';
import { RefreshOutcome, RefreshTrigger } from './refresh-outcome';

/** How often a refresh waiting for another holder's lease looks at the row again. */
const WAIT_POLL_MS = 25;
/** How much longer than a lease a waiter waits before answering `busy`. */
const WAIT_GRACE_MS = 5_000;
/** Retries of the write that stores freshly issued tokens: first pause, and the longest. */
const STORE_RETRY_FIRST_MS = 100;
const STORE_RETRY_MAX_MS = 2_000;
/** Storing stops this long before the lease runs out, so no other replica can have taken the row over meanwhile. */
const STORE_LEASE_MARGIN_MS = 1_000;

/** One request to refresh a connection, whoever makes it. */
export interface RefreshRequest {
  readonly connectionId: string;
  readonly trigger: RefreshTrigger;
  /** Checked against the latest row before the provider is asked: false means there is nothing to do (`fresh`). */
  stillNeeded(record: ConnectionRecord): boolean;
  /**
   * This replica's sweep claimed the row (RefreshLeases.claimDue): refresh under `lease` when
   * the claim is still good, else confirm the lease, but never wait for another holder; the sweep
   * moves on instead.
   */
  readonly claimed?: boolean;
  readonly lease?: Lease;
  /** Called once the provider call is over, before the row is written: the sweep counts provider calls, not writes, against its concurrency. */
  onProviderAnswered?(): void;
  /**
   * What to renew: the connection's token (the default), or the token derived from it
   * (Copernica's REST v4 JWT: minted, not refreshed). The sweep leaves it out and gets whichever
   * of the two plans is due, the token's first.
   */
  readonly target?: RefreshTarget;
}

export type RefreshTarget = 'token' | 'derived_token';

/**
 * The one code path that refreshes a token, whoever asks (a read, the sweep, an admin), and the
 * one owner of the refresh protocol:
 *
 * - In this process, concurrent requests for one connection share one attempt (`inflight`).
 * - Across replicas, a lease in the row admits one refresher (RefreshLeases); a read or an admin
 *   request that finds another holder waits for it to finish and re-reads the row. A crashed
 *   holder's lease simply expires, so a lease must outlast a provider call (REFRESH_LEASE_MS >
 *   the provider timeout). A row the sweep claimed here is refreshed from that claim by
 *   whichever request reaches it first.
 * - The write is fenced by the row version, and a rotated refresh token is stored in the same
 *   statement as its access token; a failed write is retried while the lease holds.
 * - Failures follow DESIGN guarantee 5: invalid_grant → needs_reauth, never retried;
 *   invalid_client → configuration error, connection untouched; transient → backoff in the row.
 *   Failure writes are fenced like token writes.
 *
 * Waits run on real (monotonic) time: they wait for another process, whatever a test's clock says.
 */
@Injectable()
export class RefreshEngine {
  private readonly logger = new Logger('Refresh');
  private readonly inflight = new Map<string, Promise<RefreshOutcome>>();
  private readonly random: () => number;

  constructor(
    private readonly config: AppConfig,
    private readonly connections: ConnectionRepository,
    private readonly refreshes: ConnectionRefreshRepository,
    private readonly leases: RefreshLeases,
    private readonly sealer: ConnectionSealer,
    private readonly client: ProviderClient,
    private readonly planner: RefreshPlanner,
    private readonly clock: Clock,
    private readonly metrics: Metrics,
    @Optional() @Inject(JITTER_RANDOM) random?: () => number,
  ) {
    this.random = random ?? Math.random;
    if (config.refresh.leaseMs <= PROVIDER_TIMEOUT_MS) {
      this.logger.warn(
        `REFRESH_LEASE_MS (${config.refresh.leaseMs}) is not longer than a provider call may take (${PROVIDER_TIMEOUT_MS} ms): ` +
          'a slow refresh can outlive its lease and another replica may present the same refresh token',
      );
    }
  }

  /** Refreshes the connection if the request still needs it. Concurrent requests for one connection share one attempt. */
  refresh(request: RefreshRequest): Promise<RefreshOutcome> {
    const id = request.connectionId;
    const running = this.inflight.get(id);
    if (running) return running;
    const attempt = this.attempt(request).finally(() => this.inflight.delete(id));
    this.inflight.set(id, attempt);
    return attempt;
  }

  /**
   * Resolves once no refresh is in flight in this process, whatever started it: shutdown waits for
   * this before giving the replica's leases back, since a lease released under a running refresh
   * would let another replica present the same refresh token.
   */
  async settled(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.values()]);
  }

  private async attempt(request: RefreshRequest): Promise<RefreshOutcome> {
    const id = request.connectionId;
    // The sweep on this replica claimed the row and nobody used the claim yet: refresh from it.
    const held = request.lease ?? this.leases.take(id);
    if (held) return this.refreshUnderLease(held, request);
    if (request.claimed) {
      // The claim was used by a read, or is too close to running out: confirm (and renew) the lease.
      const lease = await this.leases.claim(id);
      if (lease) return this.refreshUnderLease(lease, request);
      const state = await this.leases.state(id);
      return state?.status === ConnectionStatus.Active ? { kind: 'busy' } : { kind: 'inactive', status: state?.status ?? null };
    }
    const deadlineMonoMs = performance.now() + this.config.refresh.leaseMs + WAIT_GRACE_MS;
    for (;;) {
      const lease = await this.leases.claim(id);
      if (lease) return this.refreshUnderLease(lease, request);

      // Someone else holds the lease (or the row is not active): wait for their result.
      const state = await this.leases.state(id);
      if (!state || state.status !== ConnectionStatus.Active) return { kind: 'inactive', status: state?.status ?? null };
      if (!state.leased) continue; // released between our two statements: try again
      if ((await this.waitForRelease(id, state.version, deadlineMonoMs)) === 'timeout') return { kind: 'busy' };
      const latest = await this.connections.findSealedById(id);
      if (!latest || latest.record.status !== ConnectionStatus.Active) return { kind: 'inactive', status: latest?.record.status ?? null };
      if (!request.stillNeeded(latest.record)) return { kind: 'fresh', connection: latest };
      // The other holder gave up without new tokens (e.g. provider down): try ourselves.
    }
  }

  private async waitForRelease(id: string, version: number, deadlineMonoMs: number): Promise<'settled' | 'timeout'> {
    while (performance.now() < deadlineMonoMs) {
      await sleep(WAIT_POLL_MS);
      const state = await this.leases.state(id);
      if (!state || !state.leased || state.version !== version || state.status !== ConnectionStatus.Active) return 'settled';
    }
    return 'timeout';
  }

  private async refreshUnderLease(lease: Lease, request: RefreshRequest): Promise<RefreshOutcome> {
    const { trigger } = request;
    const claimed = lease.row;
    const { record } = claimed;
    const provider = record.provider as ProviderId;
    const settings = this.config.providers[provider];
    const count = (outcome: string): void => this.metrics.refreshes.inc({ provider, trigger, outcome });

    if (!request.stillNeeded(record)) {
      await this.leases.release(record.id);
      return { kind: 'fresh', connection: claimed };
    }
    if (this.targetOf(request, record) === 'derived_token') return this.mintUnderLease(lease, request, count);
    const nowMs = this.clock.nowMs();
    const retryAtMs = record.nextRefreshAt?.getTime() ?? null;
    if (trigger === 'read' && record.lastError && isBackingOff(record.lastError.code, retryAtMs, nowMs)) {
      // A recent attempt failed and set a retry time: readers must not hammer a provider that is down.
      await this.leases.release(record.id);
      return { kind: 'transient', message: `backing off after: ${record.lastError.message}`, retryAfterSec: Math.ceil((retryAtMs - nowMs) / 1000) };
    }
    if (record.authMode === AuthMode.ApiKey) return this.checkStaticCredential(claimed, count);
    if (!record.hasRefreshToken) {
      await this.leases.release(record.id);
      return { kind: 'not_refreshable', connection: claimed };
    }
    if (record.refreshTokenExpiresAt && record.refreshTokenExpiresAt.getTime() <= this.clock.nowMs()) {
      // The provider would answer invalid_grant: say so without asking it.
      const message = `the ${provider} refresh token expired at ${record.refreshTokenExpiresAt.toISOString()}`;
      if (!(await this.refreshes.markNeedsReauth(record.id, record.version, { code: ConnectionErrorCode.RefreshTokenExpired, message }))) {
        return this.supersededAfterFailure(record, 'refresh_token_expired', count);
      }
      count('needs_reauth');
      return { kind: 'needs_reauth', message };
    }
    if (!settings) {
      await this.refreshes.recordRefreshFailure(
        record.id,
        record.version,
        { code: ConnectionErrorCode.ProviderNotConfigured, message: `${provider} is not configured on this broker` },
        new Date(this.clock.nowMs() + MISCONFIGURED_RETRY_MS),
      );
      count('misconfigured');
      return { kind: 'misconfigured', message: `${provider} is not configured on this broker` };
    }

    let refreshToken: string;
    try {
      refreshToken = this.sealer.unseal(claimed).refreshToken!;
    } catch (error) {
      if (!(error instanceof ConnectionUnreadableError)) {
        await this.leases.release(record.id);
        throw error;
      }
      return this.recordUnreadable(record, error, count);
    }
    const started = process.hrtime.bigint();
    try {
      const issued = await this.client.refresh(settings, refreshToken).finally(() => request.onProviderAnswered?.());
      this.metrics.refreshDuration.observe({ provider }, Number(process.hrtime.bigint() - started) / 1e9);
      const now = this.clock.now();
      const tokens = issuedTokenSet(issued, now);
      const saved = await this.storeIssued(lease, tokens, {
        id: record.id,
        expectedVersion: record.version,
        tokens,
        // A response without a refresh token keeps the stored one, and with it its expiry,
        // which refreshing can then no longer push back.
        nextRefreshAt:
          issued.refreshToken !== null
            ? this.planner.nextRefreshAt(tokens.expiresAt, true, now, tokens.refreshTokenExpiresAt ?? null)
            : this.planner.nextRefreshAtKeepingRefreshToken(tokens.expiresAt, now, record.refreshTokenExpiresAt),
      });
      if (!saved) {
        // The fence held: the row changed under us (a reconnect or a revoke). Its state wins.
        this.logger.warn(`refresh of ${provider} connection ${record.id} lost the version fence; keeping the newer row`);
        const latest = await this.connections.findSealedById(record.id);
        count('superseded');
        return latest && latest.record.status === ConnectionStatus.Active ? { kind: 'fresh', connection: latest } : { kind: 'inactive', status: latest?.record.status ?? null };
      }
      count('refreshed');
      return { kind: 'refreshed', connection: saved };
    } catch (error) {
      this.metrics.refreshDuration.observe({ provider }, Number(process.hrtime.bigint() - started) / 1e9);
      if (!(error instanceof ProviderError)) {
        await this.leases.release(record.id);
        throw error;
      }
      return this.recordFailure(record, error, count);
    }
  }

  /**
   * What a request renews. The sweep does not say: it claimed the row because a plan was due, and
   * the token's plan goes first (an expired API key is flagged before anything is minted from it).
   */
  private targetOf(request: RefreshRequest, record: ConnectionRecord): RefreshTarget {
    if (request.target !== undefined || request.trigger !== 'sweep') return request.target ?? 'token';
    const nowMs = this.clock.nowMs();
    const tokenDue = record.nextRefreshAt !== null && record.nextRefreshAt.getTime() <= nowMs;
    const derivedDue = record.derivedRefreshAt !== null && record.derivedRefreshAt.getTime() <= nowMs;
    return derivedDue && !tokenDue ? 'derived_token' : 'token';
  }

  /**
   * Mints the derived token (Copernica's REST v4 JWT) from the stored token or key, under the
   * lease like a refresh: one mint per connection at a time across replicas, the write fenced by
   * the row version. A refusal (401/403) means the stored token itself is dead: needs_reauth.
   * Anything transient backs off in `derived_refresh_at`, and a derived token still stored keeps
   * being served meanwhile.
   */
  private async mintUnderLease(lease: Lease, request: RefreshRequest, count: (outcome: string) => void): Promise<RefreshOutcome> {
    const claimed = lease.row;
    const { record } = claimed;
    const provider = record.provider as ProviderId;
    const derived = providerDefinition(provider).derivedToken;
    const nowMs = this.clock.nowMs();
    if (record.authMode === AuthMode.ApiKey && record.expiresAt !== null && record.expiresAt.getTime() <= nowMs) {
      return this.checkStaticCredential(claimed, count);
    }
    const retryAtMs = record.derivedRefreshAt?.getTime() ?? null;
    if (request.trigger === 'read' && record.lastError && isBackingOff(record.lastError.code, retryAtMs, nowMs)) {
      await this.leases.release(record.id);
      return { kind: 'transient', message: `backing off after: ${record.lastError.message}`, retryAfterSec: Math.ceil((retryAtMs - nowMs) / 1000) };
    }
    const url = this.config.providerApis[provider].derivedTokenUrl;
    if (!derived || url === null) {
      await this.leases.release(record.id);
      return { kind: 'not_refreshable', connection: claimed };
    }
    let stored: string;
    try {
      stored = this.sealer.openServed(claimed);
    } catch (error) {
      if (!(error instanceof ConnectionUnreadableError)) {
        await this.leases.release(record.id);
        throw error;
      }
      const retryAt = new Date(nowMs + MISCONFIGURED_RETRY_MS);
      if (!(await this.refreshes.recordDerivedFailure(record.id, record.version, { code: ConnectionErrorCode.TokenUnreadable, message: error.message }, retryAt))) {
        return this.supersededAfterFailure(record, 'token_unreadable', count);
      }
      count('unreadable');
      return { kind: 'unreadable', message: error.message };
    }
    const started = process.hrtime.bigint();
    let minted: { token: string; expiresAt: Date };
    try {
      minted = await this.client.mintDerivedToken(provider, url, stored, this.clock.now()).finally(() => request.onProviderAnswered?.());
    } catch (error) {
      this.metrics.refreshDuration.observe({ provider }, Number(process.hrtime.bigint() - started) / 1e9);
      if (!(error instanceof ProviderError)) {
        await this.leases.release(record.id);
        throw error;
      }
      return this.recordMintFailure(record, error, count);
    }
    this.metrics.refreshDuration.observe({ provider }, Number(process.hrtime.bigint() - started) / 1e9);
    const now = this.clock.now();
    const refreshAt = this.planner.nextRefreshAt(minted.expiresAt, true, now) ?? minted.expiresAt;
    let saved: SealedConnection | null;
    try {
      saved = await this.refreshes.saveDerived({ id: record.id, expectedVersion: record.version, token: minted.token, expiresAt: minted.expiresAt, refreshAt });
    } catch (error) {
      // Nothing is lost with it: the next read or sweep mints again.
      await this.leases.release(record.id).catch(() => undefined);
      throw error;
    }
    if (!saved) {
      this.logger.warn(`derived token of ${provider} connection ${record.id} lost the version fence; keeping the newer row`);
      const latest = await this.connections.findSealedById(record.id);
      count('superseded');
      return latest && latest.record.status === ConnectionStatus.Active ? { kind: 'fresh', connection: latest } : { kind: 'inactive', status: latest?.record.status ?? null };
    }
    count('minted');
    return { kind: 'refreshed', connection: saved };
  }

  private async recordMintFailure(record: ConnectionRecord, error: ProviderError, count: (outcome: string) => void): Promise<RefreshOutcome> {
    const superseded = await this.supersededOutcome(record);
    if (superseded) {
      count('superseded');
      await this.leases.release(record.id);
      return superseded;
    }
    const message = error.message;
    if (error.kind === 'invalid_grant') {
      if (!(await this.refreshes.markNeedsReauth(record.id, record.version, { code: ConnectionErrorCode.AuthenticationRefused, message }))) {
        return this.supersededAfterFailure(record, error.kind, count);
      }
      this.logger.warn(`${record.provider} connection ${record.id} (account ${record.account}) needs re-authorisation: ${message}`);
      count('needs_reauth');
      return { kind: 'needs_reauth', message };
    }
    const delay = backoffDelayMs(record.refreshFailures, this.random, error.details.retryAfterSec);
    const retryAt = new Date(this.clock.nowMs() + delay);
    if (!(await this.refreshes.recordDerivedFailure(record.id, record.version, { code: ConnectionErrorCode.DerivedTokenUnavailable, message }, retryAt))) {
      return this.supersededAfterFailure(record, error.kind, count);
    }
    count(error.kind === 'transient' ? 'transient' : 'rejected');
    return { kind: 'transient', message, retryAfterSec: error.details.retryAfterSec ?? Math.ceil(delay / 1000) };
  }

  /**
   * A static credential is never refreshed: nothing to do while it lasts; past its expiry the
   * connection is flagged needs_reauth (credential_expired) without asking the provider. The sweep
   * reaches it at its expiry (its planned time), a read or an admin request whenever they ask.
   */
  private async checkStaticCredential(claimed: SealedConnection, count: (outcome: string) => void): Promise<RefreshOutcome> {
    const { record } = claimed;
    if (record.expiresAt === null || record.expiresAt.getTime() > this.clock.nowMs()) {
      await this.leases.release(record.id);
      return { kind: 'not_refreshable', connection: claimed };
    }
    const message = `the ${record.provider} API key expired at ${record.expiresAt.toISOString()}`;
    if (!(await this.refreshes.markNeedsReauth(record.id, record.version, { code: ConnectionErrorCode.CredentialExpired, message }))) {
      return this.supersededAfterFailure(record, ConnectionErrorCode.CredentialExpired, count);
    }
    this.logger.warn(`${record.provider} connection ${record.id} (account ${record.account}) needs a new API key: ${message}`);
    count('needs_reauth');
    return { kind: 'needs_reauth', message };
  }

  private async recordFailure(record: ConnectionRecord, error: ProviderError, count: (outcome: string) => void): Promise<RefreshOutcome> {
    const message = error.message;
    // If the row moved on while we waited for the provider (our lease lapsed and another
    // refresher stored newer tokens, or the user reconnected), this failure concerns a refresh
    // token the connection no longer has: it must not mark the row, least of all needs_reauth.
    const superseded = await this.supersededOutcome(record);
    if (superseded) {
      this.logger.warn(`refresh of ${record.provider} connection ${record.id} failed (${error.kind}) after the row moved on; keeping the newer row`);
      count('superseded');
      return superseded;
    }
    if (error.kind === 'invalid_grant') {
      if (!(await this.refreshes.markNeedsReauth(record.id, record.version, { code: ConnectionErrorCode.InvalidGrant, message }))) {
        return this.supersededAfterFailure(record, error.kind, count);
      }
      this.logger.warn(`${record.provider} connection ${record.id} (account ${record.account}) needs re-authorisation: ${message}`);
      count('needs_reauth');
      return { kind: 'needs_reauth', message };
    }
    if (error.kind === 'invalid_client') {
      if (!(await this.refreshes.recordRefreshFailure(record.id, record.version, { code: ConnectionErrorCode.InvalidClient, message }, new Date(this.clock.nowMs() + MISCONFIGURED_RETRY_MS)))) {
        return this.supersededAfterFailure(record, error.kind, count);
      }
      this.logger.error(`${record.provider} rejected our client credentials: check ${providerDefinition(record.provider as ProviderId).envPrefix}_CLIENT_ID/SECRET (${message})`);
      count('misconfigured');
      return { kind: 'misconfigured', message };
    }
    const delay = backoffDelayMs(record.refreshFailures, this.random, error.details.retryAfterSec);
    const code = error.kind === 'transient' ? ConnectionErrorCode.ProviderUnavailable : ConnectionErrorCode.RefreshRejected;
    if (!(await this.refreshes.recordRefreshFailure(record.id, record.version, { code, message }, new Date(this.clock.nowMs() + delay)))) {
      return this.supersededAfterFailure(record, error.kind, count);
    }
    count(error.kind === 'transient' ? 'transient' : 'rejected');
    return { kind: 'transient', message, retryAfterSec: error.details.retryAfterSec ?? Math.ceil(delay / 1000) };
  }

  /**
   * A stored token the ring cannot open. Nothing is sent to the provider; the row keeps its
   * tokens (the key may come back) and is tried again after the misconfiguration delay, and
   * the lease goes back at once.
   */
  private async recordUnreadable(record: ConnectionRecord, error: ConnectionUnreadableError, count: (outcome: string) => void): Promise<RefreshOutcome> {
    const retryAt = new Date(this.clock.nowMs() + MISCONFIGURED_RETRY_MS);
    const recorded = await this.refreshes.recordRefreshFailure(record.id, record.version, { code: ConnectionErrorCode.TokenUnreadable, message: error.message }, retryAt);
    if (!recorded) return this.supersededAfterFailure(record, 'token_unreadable', count);
    this.logger.error(`cannot refresh ${record.provider} connection ${record.id}: ${error.message}`);
    count('unreadable');
    return { kind: 'unreadable', message: error.message };
  }

  /**
   * Stores what the provider just issued. The provider may have rotated the refresh token: the
   * one stored is then dead, and these tokens are the connection's only way forward (guarantee
   * 10). So a failed write (database unreachable, connection lost) is retried with backoff for
   * as long as this replica's lease keeps every other replica off the row. Returns the stored
   * row, or null when the fence says the row moved on (the newer row wins).
   */
  private async storeIssued(lease: Lease, tokens: TokenSet, input: Parameters<ConnectionRefreshRepository['saveRefreshed']>[0]): Promise<SealedConnection | null> {
    const { record } = lease.row;
    let pauseMs = STORE_RETRY_FIRST_MS;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.refreshes.saveRefreshed({ ...input, tokens });
      } catch (error) {
        const leaseLeftMs = lease.endsAtMonoMs - STORE_LEASE_MARGIN_MS - performance.now();
        const reason = describeError(error);
        if (leaseLeftMs <= pauseMs) {
          this.logger.error(
            `new tokens of ${record.provider} connection ${record.id} could not be stored after ${attempt} attempts (${reason}) ` +
              'before its lease ran out; if the provider rotated the refresh token, the connection will need re-authorization',
          );
          throw error;
        }
        this.logger.warn(`storing new tokens of ${record.provider} connection ${record.id} failed (${reason}); retrying in ${pauseMs} ms while the lease holds`);
        await sleep(pauseMs);
        pauseMs = Math.min(pauseMs * 2, STORE_RETRY_MAX_MS);
      }
    }
  }

  /** A fenced failure write found the row changed: report what it is now instead. */
  private async supersededAfterFailure(record: ConnectionRecord, what: string, count: (outcome: string) => void): Promise<RefreshOutcome> {
    this.logger.warn(`refresh of ${record.provider} connection ${record.id} failed (${what}) after the row moved on; keeping the newer row`);
    count('superseded');
    await this.leases.release(record.id);
    return (await this.supersededOutcome(record)) ?? { kind: 'busy' };
  }

  /** What the connection is now if its version is no longer the one `record` was read at; undefined if unchanged. */
  private async supersededOutcome(record: ConnectionRecord): Promise<RefreshOutcome | undefined> {
    const state = await this.leases.state(record.id);
    if (state && state.version === record.version) return undefined;
    const latest = state ? await this.connections.findSealedById(record.id) : null;
    return latest && latest.record.status === ConnectionStatus.Active ? { kind: 'fresh', connection: latest } : { kind: 'inactive', status: latest?.record.status ?? null };
  }
}

/** An error's code and class, for a log line: never its message, which may quote SQL parameters. */
function describeError(error: unknown): string {
  const e = error as { code?: unknown; name?: unknown };
  return [typeof e.name === 'string' ? e.name : 'Error', typeof e.code === 'string' ? e.code : ''].filter(Boolean).join(' ');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
