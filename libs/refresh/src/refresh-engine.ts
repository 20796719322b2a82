import { Clock } from '@app/common';
import { AppConfig } from '@app/config';
import { ConnectionRecord, ConnectionRepository, ConnectionStatus, SealedConnection } from '@app/connections';
import { Metrics } from '@app/observability';
import { PROVIDER_TIMEOUT_MS, ProviderClient, ProviderError, ProviderId } from '@app/providers';
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
  private readonly queuedClaims = new Map<string, { row: SealedConnection; claimedAtMs: number }>();
  /** Identifies this replica's leases. */
  readonly owner = `${hostname().slice(0, 32)}:${process.pid}:${randomBytes(4).toString('hex')}`;
  private readonly random: () => number;

  constructor(
    private readonly config: AppConfig,
    private readonly connections: ConnectionRepository,
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
    for (const row of rows) this.queuedClaims.set(row.record.id, { row, claimedAtMs });
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
  private takeQueuedClaim(id: string): SealedConnection | undefined {
    const queued = this.queuedClaims.get(id);
    if (!queued) return undefined;
    this.queuedClaims.delete(id);
    const leaseLeftMs = queued.claimedAtMs + this.config.refresh.leaseMs - this.clock.nowMs();
    return leaseLeftMs > PROVIDER_TIMEOUT_MS + CLAIM_SAFETY_MS ? queued.row : undefined;
  }

  private async confirmAndRefresh(
    id: string,
    trigger: RefreshTrigger,
    stillNeeded: (record: ConnectionRecord) => boolean,
    onProviderAnswered?: () => void,
  ): Promise<RefreshOutcome> {
    const current = await this.connections.claimRefreshLease(id, this.owner, this.clock.now(), this.config.refresh.leaseMs);
    if (current) return this.refreshClaimed(current, trigger, stillNeeded, onProviderAnswered);
    // Our lease lapsed and another replica holds the row now, or it is no longer active: theirs to finish.
    const state = await this.connections.refreshState(id, this.clock.now());
    return state && state.status === ConnectionStatus.Active ? { kind: 'busy' } : { kind: 'inactive', status: state?.status ?? null };
  }

  private async attempt(id: string, trigger: RefreshTrigger, stillNeeded: (record: ConnectionRecord) => boolean): Promise<RefreshOutcome> {
    // The sweep on this replica claimed the row and has not reached it yet: refresh from its claim.
    const queued = this.takeQueuedClaim(id);
    if (queued) return this.refreshClaimed(queued, trigger, stillNeeded);
    const deadline = this.clock.nowMs() + this.config.refresh.leaseMs + 5_000;
    for (;;) {
      const claimed = await this.connections.claimRefreshLease(id, this.owner, this.clock.now(), this.config.refresh.leaseMs);
      if (claimed) return this.refreshClaimed(claimed, trigger, stillNeeded);

      // Someone else holds the lease (or the row is not active): wait for their result.
      const state = await this.connections.refreshState(id, this.clock.now());
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
      const state = await this.connections.refreshState(id, this.clock.now());
      if (!state || !state.leased || state.version !== version || state.status !== ConnectionStatus.Active) return 'settled';
    }
    return 'timeout';
  }

  private async refreshClaimed(
    claimed: SealedConnection,
    trigger: RefreshTrigger,
    stillNeeded: (record: ConnectionRecord) => boolean,
    onProviderAnswered?: () => void,
  ): Promise<RefreshOutcome> {
    const { record } = claimed;
    const provider = record.provider as ProviderId;
    const settings = this.config.providers[provider];
    const count = (outcome: string): void => this.metrics.refreshes.inc({ provider, trigger, outcome });

    if (!stillNeeded(record)) {
      await this.connections.releaseRefreshLease(record.id, this.owner);
      return { kind: 'fresh', connection: claimed };
    }
    const retryAt = record.nextRefreshAt?.getTime() ?? 0;
    if (trigger === 'read' && record.lastError && record.lastError.code !== 'invalid_grant' && retryAt > this.clock.nowMs()) {
      // A recent attempt failed and set a retry time: readers must not hammer a provider that is down.
      await this.connections.releaseRefreshLease(record.id, this.owner);
      return {
        kind: 'transient',
        message: `backing off after: ${record.lastError.message}`,
        retryAfterSec: Math.ceil((retryAt - this.clock.nowMs()) / 1000),
      };
    }
    if (!record.hasRefreshToken) {
      await this.connections.releaseRefreshLease(record.id, this.owner);
      return { kind: 'not_refreshable', connection: claimed };
    }
    if (record.refreshTokenExpiresAt && record.refreshTokenExpiresAt.getTime() <= this.clock.nowMs()) {
      // The provider would answer invalid_grant: say so without asking it.
      const message = `the ${provider} refresh token expired at ${record.refreshTokenExpiresAt.toISOString()}`;
      await this.connections.markNeedsReauth(record.id, { code: 'refresh_token_expired', message });
      count('needs_reauth');
      return { kind: 'needs_reauth', message };
    }
    if (!settings) {
      await this.connections.recordRefreshFailure(
        record.id,
        { code: 'provider_not_configured', message: `${provider} is not configured on this broker` },
        new Date(this.clock.nowMs() + MISCONFIGURED_RETRY_MS),
      );
      count('misconfigured');
      return { kind: 'misconfigured', message: `${provider} is not configured on this broker` };
    }

    const { refreshToken } = this.connections.unseal(claimed);
    const started = process.hrtime.bigint();
    try {
      const issued = await this.client.refresh(settings, refreshToken!).finally(onProviderAnswered);
      this.metrics.refreshDuration.observe({ provider }, Number(process.hrtime.bigint() - started) / 1e9);
      const now = this.clock.now();
      const tokens = issuedTokenSet(issued, now);
      const saved = await this.connections.saveRefreshed({
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
        await this.connections.releaseRefreshLease(record.id, this.owner);
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
      await this.connections.markNeedsReauth(record.id, { code: 'invalid_grant', message });
      this.logger.warn(`${record.provider} connection ${record.id} (account ${record.account}) needs re-authorisation: ${message}`);
      count('needs_reauth');
      return { kind: 'needs_reauth', message };
    }
    if (error.kind === 'invalid_client') {
      await this.connections.recordRefreshFailure(record.id, { code: 'invalid_client', message }, new Date(this.clock.nowMs() + MISCONFIGURED_RETRY_MS));
      this.logger.error(`${record.provider} rejected our client credentials: check ${record.provider.toUpperCase()}_CLIENT_ID/SECRET (${message})`);
      count('misconfigured');
      return { kind: 'misconfigured', message };
    }
    const delay = backoffDelayMs(record.refreshFailures, this.random, error.details.retryAfterSec);
    const code = error.kind === 'transient' ? 'provider_unavailable' : 'refresh_rejected';
    await this.connections.recordRefreshFailure(record.id, { code, message }, new Date(this.clock.nowMs() + delay));
    count(error.kind === 'transient' ? 'transient' : 'rejected');
    return { kind: 'transient', message, retryAfterSec: error.details.retryAfterSec ?? Math.ceil(delay / 1000) };
  }

  /** What the connection is now if its version is no longer the one `record` was read at; undefined if unchanged. */
  private async supersededOutcome(record: ConnectionRecord): Promise<RefreshOutcome | undefined> {
    const state = await this.connections.refreshState(record.id, this.clock.now());
    if (state && state.version === record.version) return undefined;
    const latest = state ? await this.connections.findSealedById(record.id) : null;
    return latest && latest.record.status === ConnectionStatus.Active ? { kind: 'fresh', connection: latest } : { kind: 'inactive', status: latest?.record.status ?? null };
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
