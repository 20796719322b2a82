import { Clock } from '@app/common';
import { AppConfig } from '@app/config';
import {
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
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { backoffDelayMs, MISCONFIGURED_RETRY_MS } from './backoff';
import { issuedTokenSet } from './issued-token-set';
import { JITTER_RANDOM, RefreshPlanner } from './refresh-planner';
import { RefreshOutcome, RefreshTrigger } from './refresh-outcome';

const WAIT_POLL_MS = 25;
/** A queued claim is trusted only while its lease still covers a whole provider call plus this. */
const CLAIM_SAFETY_MS = 2_000;
/** Retries of the write that stores freshly issued tokens: first pause, and the longest. */
const STORE_RETRY_FIRST_MS = 100;
const STORE_RETRY_MAX_MS = 2_000;
/** Storing stops this long before the lease runs out, so no other replica can have taken the row over meanwhile. */
const STORE_LEASE_MARGIN_MS = 1_000;

/**
 * The one code path that refreshes a token, whoever asks (a read, the sweep, an admin).
 *
 * - In this process, concurrent requests for one connection share one attempt.
 * - Across replicas, a lease in the row (claimRefreshLease) admits one refresher; the others
 *   wait for the lease to go and re-read the row. A crashed holder's lease simply expires, so a
 *   lease must outlast a provider call (REFRESH_LEASE_MS > the provider timeout).
 * - The write is fenced by the row version, and a rotated refresh token is stored in the same
 *   statement as its access token (saveRefreshed).
 * - Failures follow DESIGN guarantee 5: invalid_grant → needs_reauth, never retried;
 *   invalid_client → configuration error, connection untouched; transient → backoff in the row.
 */
@Injectable()
export class RefreshEngine {
  private readonly logger = new Logger('Refresh');
  private readonly inflight = new Map<string, Promise<RefreshOutcome>>();
  /** Rows the sweep claimed for this replica and has not started yet: the claimed row and when it was claimed. */
  private readonly queuedClaims = new Map<string, { row: SealedConnection; claimedAtMs: number; claimedAtMonoMs: number }>();
  /** Identifies this replica's leases. */
  readonly owner = `${hostname().slice(0, 32)}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly random: () => number;

  constructor(
    private readonly config: AppConfig,
    private readonly connections: ConnectionRepository,
    private readonly refreshes: ConnectionRefreshRepository,
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

  /**
   * Refreshes the connection if `stillNeeded` holds for its latest row. Concurrent calls for the
   * same connection in this process share one attempt.
   */
  refresh(connectionId: string, trigger: RefreshTrigger, stillNeeded: (record: ConnectionRecord) => boolean): Promise<RefreshOutcome> {
    const running = this.inflight.get(connectionId);
    if (running) return running;
    const attempt = this.attempt(connectionId, trigger, stillNeeded).finally(() => this.inflight.delete(connectionId));
    this.inflight.set(connectionId, attempt);
    return attempt;
  }

  /**
   * The sweep hands over the rows it just claimed (claimDueForRefresh), before they wait in its
   * queue. Until the sweep starts one (refreshLeased), a read in this process that needs it
   * refreshes from the claim instead: a replica's lease does not keep out its own readers, and
   * the sweep must never present a refresh token a read has already rotated.
   */
  holdClaims(rows: readonly SealedConnection[]): void {
    const claimedAtMs = this.clock.nowMs();
    const claimedAtMonoMs = performance.now();
    for (const row of rows) this.queuedClaims.set(row.record.id, { row, claimedAtMs, claimedAtMonoMs });
  }

  /** Forgets claims the sweep gives back unstarted (it releases their leases itself). */
  dropClaims(ids: readonly string[]): void {
    for (const id of ids) this.queuedClaims.delete(id);
  }

  /**
   * Refreshes a connection the sweep claimed for this replica, if it is still due. Shares the
   * in-process single flight with readers. The claimed row is used as it is while the lease
   * still covers a provider call and no reader took it over (holdClaims); otherwise the lease is
   * confirmed, renewed and the row re-read, in one statement, before anything is sent.
   * `onProviderAnswered` is called once the provider call is over (before the row is written),
   * so the sweep can count provider calls rather than whole refreshes against its concurrency.
   */
  refreshLeased(
    connectionId: string,
    trigger: RefreshTrigger,
    stillNeeded: (record: ConnectionRecord) => boolean,
    onProviderAnswered?: () => void,
  ): Promise<RefreshOutcome> {
    const running = this.inflight.get(connectionId);
    if (running) return running;
    const claimed = this.takeQueuedClaim(connectionId);
    const attempt = (
      claimed
        ? this.refreshClaimed(claimed, trigger, stillNeeded, onProviderAnswered)
        : this.confirmAndRefresh(connectionId, trigger, stillNeeded, onProviderAnswered)
    ).finally(() => this.inflight.delete(connectionId));
    this.inflight.set(connectionId, attempt);
    return attempt;
  }

  /** The queued claim on a row, if its lease still covers a provider call; taken, so only one caller uses it. */
  private takeQueuedClaim(id: string): Lease | undefined {
    const queued = this.queuedClaims.get(id);
    if (!queued) return undefined;
    this.queuedClaims.delete(id);
    const leaseLeftMs = queued.claimedAtMs + this.config.refresh.leaseMs - this.clock.nowMs();
    if (leaseLeftMs <= PROVIDER_TIMEOUT_MS + CLAIM_SAFETY_MS) return undefined;
    return { row: queued.row, endsAtMonoMs: queued.claimedAtMonoMs + this.config.refresh.leaseMs };
  }

  /** A lease this replica just took on a row (claimRefreshLease), or null. */
  private async claimLease(id: string): Promise<Lease | null> {
    const endsAtMonoMs = performance.now() + this.config.refresh.leaseMs;
    const row = await this.refreshes.claimRefreshLease(id, this.owner, this.clock.now(), this.config.refresh.leaseMs);
    return row ? { row, endsAtMonoMs } : null;
  }

  private async confirmAndRefresh(
    id: string,
    trigger: RefreshTrigger,
    stillNeeded: (record: ConnectionRecord) => boolean,
    onProviderAnswered?: () => void,
  ): Promise<RefreshOutcome> {
    const current = await this.claimLease(id);
    if (current) return this.refreshClaimed(current, trigger, stillNeeded, onProviderAnswered);
    // Our lease lapsed and another replica holds the row now, or it is no longer active: theirs to finish.
    const state = await this.refreshes.refreshState(id, this.clock.now());
    return state && state.status === ConnectionStatus.Active ? { kind: 'busy' } : { kind: 'inactive', status: state?.status ?? null };
  }

  private async attempt(id: string, trigger: RefreshTrigger, stillNeeded: (record: ConnectionRecord) => boolean): Promise<RefreshOutcome> {
    // The sweep on this replica claimed the row and has not reached it yet: refresh from its claim.
    const queued = this.takeQueuedClaim(id);
    if (queued) return this.refreshClaimed(queued, trigger, stillNeeded);
    const deadline = this.clock.nowMs() + this.config.refresh.leaseMs + 5_000;
    for (;;) {
      const claimed = await this.claimLease(id);
      if (claimed) return this.refreshClaimed(claimed, trigger, stillNeeded);

      // Someone else holds the lease (or the row is not active): wait for their result.
      const state = await this.refreshes.refreshState(id, this.clock.now());
      if (!state || state.status !== ConnectionStatus.Active) return { kind: 'inactive', status: state?.status ?? null };
      if (!state.leased) continue; // released between our two statements: try again
      const settled = await this.waitForLease(id, state.version, deadline);
      if (settled === 'timeout') return { kind: 'busy' };
      const latest = await this.connections.findSealedById(id);
      if (!latest || latest.record.status !== ConnectionStatus.Active) return { kind: 'inactive', status: latest?.record.status ?? null };
      if (!stillNeeded(latest.record)) return { kind: 'fresh', connection: latest };
      // The other holder gave up without new tokens (e.g. provider down): try ourselves.
    }
  }

  private async waitForLease(id: string, version: number, deadline: number): Promise<'settled' | 'timeout'> {
    while (this.clock.nowMs() < deadline) {
      await sleep(WAIT_POLL_MS);
      const state = await this.refreshes.refreshState(id, this.clock.now());
      if (!state || !state.leased || state.version !== version || state.status !== ConnectionStatus.Active) return 'settled';
    }
    return 'timeout';
  }

  private async refreshClaimed(
    lease: Lease,
    trigger: RefreshTrigger,
    stillNeeded: (record: ConnectionRecord) => boolean,
    onProviderAnswered?: () => void,
  ): Promise<RefreshOutcome> {
    const claimed = lease.row;
    const { record } = claimed;
    const provider = record.provider as ProviderId;
    const settings = this.config.providers[provider];
    const count = (outcome: string): void => this.metrics.refreshes.inc({ provider, trigger, outcome });

    if (!stillNeeded(record)) {
      await this.refreshes.releaseRefreshLease(record.id, this.owner);
      return { kind: 'fresh', connection: claimed };
    }
    const retryAt = record.nextRefreshAt?.getTime() ?? 0;
    if (trigger === 'read' && record.lastError && record.lastError.code !== ConnectionErrorCode.InvalidGrant && retryAt > this.clock.nowMs()) {
      // A recent attempt failed and set a retry time: readers must not hammer a provider that is down.
      await this.refreshes.releaseRefreshLease(record.id, this.owner);
      return {
        kind: 'transient',
        message: `backing off after: ${record.lastError.message}`,
        retryAfterSec: Math.ceil((retryAt - this.clock.nowMs()) / 1000),
      };
    }
    if (!record.hasRefreshToken) {
      await this.refreshes.releaseRefreshLease(record.id, this.owner);
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
        await this.refreshes.releaseRefreshLease(record.id, this.owner);
        throw error;
      }
      return this.recordUnreadable(record, error, count);
    }
    const started = process.hrtime.bigint();
    try {
      const issued = await this.client.refresh(settings, refreshToken).finally(onProviderAnswered);
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
        await this.refreshes.releaseRefreshLease(record.id, this.owner);
        throw error;
      }
      return this.recordFailure(record, error, count);
    }
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
    await this.refreshes.releaseRefreshLease(record.id, this.owner);
    return (await this.supersededOutcome(record)) ?? { kind: 'busy' };
  }

  /** What the connection is now if its version is no longer the one `record` was read at; undefined if unchanged. */
  private async supersededOutcome(record: ConnectionRecord): Promise<RefreshOutcome | undefined> {
    const state = await this.refreshes.refreshState(record.id, this.clock.now());
    if (state && state.version === record.version) return undefined;
    const latest = state ? await this.connections.findSealedById(record.id) : null;
    return latest && latest.record.status === ConnectionStatus.Active ? { kind: 'fresh', connection: latest } : { kind: 'inactive', status: latest?.record.status ?? null };
  }
}

/** A row this replica holds the refresh lease on, and when (monotonic time) that lease runs out. */
interface Lease {
  row: SealedConnection;
  endsAtMonoMs: number;
}

/** An error's code and class, for a log line: never its message, which may quote SQL parameters. */
function describeError(error: unknown): string {
  const e = error as { code?: unknown; name?: unknown };
  return [typeof e.name === 'string' ? e.name : 'Error', typeof e.code === 'string' ? e.code : ''].filter(Boolean).join(' ');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
