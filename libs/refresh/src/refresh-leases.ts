import { Clock, newLeaseOwnerId } from '@app/common';
import { AppConfig } from '@app/config';
import { ConnectionRefreshRepository, RefreshState, SealedConnection } from '@app/connections';
import { PROVIDER_TIMEOUT_MS } from '@app/providers';
import { Injectable } from '@nestjs/common';

/** A held claim is used only while its lease still covers a whole provider call plus this. */
const CLAIM_SAFETY_MS = 2_000;

/** A row this replica holds the refresh lease on, and when (monotonic time) that lease runs out. */
export interface Lease {
  readonly row: SealedConnection;
  readonly endsAtMonoMs: number;
}

interface HeldClaim {
  readonly row: SealedConnection;
  readonly claimedAtMs: number;
  readonly claimedAtMonoMs: number;
}

/**
 * This replica's refresh leases: the one owner of who this replica is (`owner`, written into
 * every lease it takes) and of the rows the sweep claimed and has not started yet (held claims).
 *
 * A replica's lease does not keep out its own readers, so a held claim is handed to whichever
 * refresh asks for the row first: the sweep when it reaches it, or a read that needs it sooner.
 * Either way it is used once, so the sweep never presents a refresh token a read has already
 * rotated. Held claims are kept in claim order, which is the sweep's work order (oldest due
 * first).
 */
@Injectable()
export class RefreshLeases {
  readonly owner = newLeaseOwnerId();
  private readonly held = new Map<string, HeldClaim>();
  /** Rows a `claim` is reading right now, with how many such calls. */
  private readonly claiming = new Map<string, number>();
  /** One set per claimDue in flight: the rows a `claim` read meanwhile, which that claimDue must not hold. */
  private readonly claimedDuringDue = new Set<Set<string>>();

  constructor(
    private readonly config: AppConfig,
    private readonly refreshes: ConnectionRefreshRepository,
    private readonly clock: Clock,
  ) {}

  /** Claims up to `limit` due connections of `provider` for this replica (SKIP LOCKED) and holds them. Returns how many. */
  async claimDue(provider: string, limit: number): Promise<number> {
    // This replica's lease admits its own reads, so a read may claim a row this claim took while
    // the answer is on its way, and refresh it: the answer's copy would then carry a refresh token
    // the read has rotated. Such a row is not held; the read that claimed it owns the lease.
    const claimedMeanwhile = new Set(this.claiming.keys());
    this.claimedDuringDue.add(claimedMeanwhile);
    let rows: SealedConnection[];
    try {
      rows = await this.refreshes.claimDueForRefresh(provider, this.owner, this.clock.now(), this.config.refresh.leaseMs, limit);
    } finally {
      this.claimedDuringDue.delete(claimedMeanwhile);
    }
    const claimedAtMs = this.clock.nowMs();
    const claimedAtMonoMs = performance.now();
    for (const row of rows) {
      if (!claimedMeanwhile.has(row.record.id)) this.held.set(row.record.id, { row, claimedAtMs, claimedAtMonoMs });
    }
    return rows.length;
  }

  /** How many held claims of `provider` wait to be started. */
  heldCount(provider: string): number {
    let count = 0;
    for (const claim of this.held.values()) if (claim.row.record.provider === provider) count++;
    return count;
  }

  /** Takes the oldest held claim of `provider` (see `take`), or undefined when none is held. */
  takeNext(provider: string): { id: string; lease: Lease | undefined } | undefined {
    for (const [id, claim] of this.held) {
      if (claim.row.record.provider === provider) return { id, lease: this.take(id) };
    }
    return undefined;
  }

  /**
   * Takes the held claim on a row, if there is one: it is used by one caller only. Returns its
   * lease while that still covers a provider call; a claim too close to running out is dropped
   * (the caller confirms the lease with `claim` instead).
   */
  take(id: string): Lease | undefined {
    const claim = this.held.get(id);
    if (!claim) return undefined;
    this.held.delete(id);
    const leaseLeftMs = claim.claimedAtMs + this.config.refresh.leaseMs - this.clock.nowMs();
    if (leaseLeftMs <= PROVIDER_TIMEOUT_MS + CLAIM_SAFETY_MS) return undefined;
    return { row: claim.row, endsAtMonoMs: claim.claimedAtMonoMs + this.config.refresh.leaseMs };
  }

  /** Takes (or renews) the lease on a row right now, re-reading it; null when another replica holds it or it is not active. */
  async claim(id: string): Promise<Lease | null> {
    // A held claim on the row is superseded by this fresher read of it: never used after this.
    this.held.delete(id);
    for (const claimedMeanwhile of this.claimedDuringDue) claimedMeanwhile.add(id);
    this.claiming.set(id, (this.claiming.get(id) ?? 0) + 1);
    try {
      const endsAtMonoMs = performance.now() + this.config.refresh.leaseMs;
      const row = await this.refreshes.claimRefreshLease(id, this.owner, this.clock.now(), this.config.refresh.leaseMs);
      return row ? { row, endsAtMonoMs } : null;
    } finally {
      const left = (this.claiming.get(id) ?? 1) - 1;
      if (left === 0) this.claiming.delete(id);
      else this.claiming.set(id, left);
    }
  }

  /** Gives a lease back without writing tokens. */
  release(id: string): Promise<void> {
    return this.refreshes.releaseRefreshLease(id, this.owner);
  }

  /** Gives back every held claim of `provider` (the sweep stops before starting them). */
  async releaseHeld(provider: string): Promise<void> {
    const ids = [...this.held].filter(([, claim]) => claim.row.record.provider === provider).map(([id]) => id);
    for (const id of ids) {
      this.held.delete(id);
      await this.release(id);
    }
  }

  /** Gives back every lease this replica holds, held claims or not (shutdown). */
  async releaseAll(): Promise<number> {
    this.held.clear();
    return this.refreshes.releaseLeasesOf(this.owner);
  }

  /** The row's version, status and whether a lease on it is running. */
  state(id: string): Promise<RefreshState | null> {
    return this.refreshes.refreshState(id, this.clock.now());
  }
}
