/**
 * Online key rotation (DESIGN guarantees 1 and 11): re-seals every sealed value the database
 * holds (access and refresh tokens, each by its own key id, and the PKCE verifiers of pending
 * authorizations) under the active key, in batches, while the service keeps serving and refreshing.
 *
 * Why this is safe next to live replicas (guarantee 3):
 * - Each batch takes its rows with `FOR UPDATE SKIP LOCKED`: a row a refresher is writing right
 *   now is skipped, not waited on, and picked up by a later pass.
 * - A row this batch holds makes a refresher's fenced write (`... WHERE version = $n`) wait for
 *   our commit and then re-check its fence against the re-sealed row.
 * - Re-sealing changes no token, so it does not bump `version`: that refresher's fence still
 *   holds and its newer tokens land on top of ours. Nothing a refresher wrote is ever replaced
 *   by an older value, and no refresh is failed because rotation touched the row.
 *
 * It must never hide an unreadable row: a value whose key left the ring stops the run with the
 * repository's ConnectionUnreadableError (connection id and key id, never a token).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyRotationRepository, ResealProgress } from './key-rotation.repository';

export interface KeyRotationProgress {
  /** Rows re-sealed so far in this run. */
  resealed: number;
  /** Rows still under another key: exact when a pass finds nothing left, otherwise an estimate. */
  remaining: number;
  elapsedMs: number;
}

export interface KeyRotationOptions {
  /** Rows per transaction (default 500). Bigger batches hold more row locks for longer. */
  batchSize?: number;
  /** Called after every batch. */
  onProgress?: (progress: KeyRotationProgress) => void;
  /** Wait before retrying rows a writer held locked (default 200 ms), so a retry never spins. */
  pauseMs?: number;
  /**
   * Upper bound on passes (default 150). A pass runs batches until one re-seals nothing or skips
   * a locked row; another pass starts, after `pauseMs`, only for rows that were locked.
   */
  maxPasses?: number;
  /**
   * The ring's active key id (TokenCipher.activeKeyId). Only used for progress: without it the
   * starting estimate of `remaining` counts rows under every key.
   */
  activeKeyId?: string;
}

export interface KeyRotationResult {
  resealed: number;
  elapsedMs: number;
  rowsPerSecond: number;
  /** Rows per key id after the run (KeyRotationRepository.countByKeyId), active key included. */
  remainingByKey: Record<string, number>;
}

/** Rows under an old key were still there after `maxPasses` passes (held locked, or rewritten under an old key). */
export class KeyRotationIncompleteError extends Error {
  override readonly name = 'KeyRotationIncompleteError';

  constructor(
    readonly passes: number,
    readonly resealed: number,
    readonly remainingByKey: Record<string, number>,
  ) {
    super(
      `rows under an old key were still left after ${passes} passes (${resealed} re-sealed); ` +
        `rows by key id now: ${formatCounts(remainingByKey)}. Either writers held them locked the whole time, ` +
        'or a replica still seals under an old key (is every replica running with the new key first?). Run again.',
    );
  }
}

const DEFAULTS = { batchSize: 500, pauseMs: 200, maxPasses: 150 };

/**
 * Re-seals until no row is left under a key other than the active one. Idempotent: a second run
 * finds nothing and re-seals 0 rows. Rows skipped because a writer held them are retried on the
 * next pass after `pauseMs`.
 * @throws ConnectionUnreadableError when a stored value cannot be opened with the ring.
 * @throws KeyRotationIncompleteError when old-key rows outlast `maxPasses`.
 */
export async function rotateKeys(repository: Pick<KeyRotationRepository, 'resealBatch' | 'countByKeyId'>, options: KeyRotationOptions = {}): Promise<KeyRotationResult> {
  const batchSize = positiveInteger('batchSize', options.batchSize ?? DEFAULTS.batchSize);
  const pauseMs = nonNegativeInteger('pauseMs', options.pauseMs ?? DEFAULTS.pauseMs);
  const maxPasses = positiveInteger('maxPasses', options.maxPasses ?? DEFAULTS.maxPasses);
  const { onProgress, activeKeyId } = options;

  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  let resealed = 0;
  // What is left = (rows under other keys at the last count) - (re-sealed since then).
  let staleAtCount = onProgress ? staleRows(await repository.countByKeyId(), activeKeyId) : 0;
  let resealedAtCount = 0;

  for (let pass = 1; ; pass++) {
    // One pass: batches while they make progress and skip nothing. A full batch never skips.
    let batch: ResealProgress;
    do {
      batch = await repository.resealBatch(batchSize);
      resealed += batch.resealed;
      if (onProgress) {
        const remaining = isFinished(batch) ? 0 : Math.max(0, staleAtCount - (resealed - resealedAtCount));
        onProgress({ resealed, remaining, elapsedMs: elapsed() });
      }
    } while (batch.resealed > 0 && !batch.skippedLocked);

    if (isFinished(batch)) break;
    if (pass >= maxPasses) {
      throw new KeyRotationIncompleteError(pass, resealed, await repository.countByKeyId());
    }
    // Rows a writer holds right now: their lock is brief, so wait a moment rather than spin on them.
    await sleep(pauseMs);
    if (onProgress && activeKeyId !== undefined) {
      staleAtCount = staleRows(await repository.countByKeyId(), activeKeyId);
      resealedAtCount = resealed;
    }
  }

  const elapsedMs = elapsed();
  return {
    resealed,
    elapsedMs,
    rowsPerSecond: elapsedMs > 0 ? Math.round((resealed * 1000) / elapsedMs) : 0,
    remainingByKey: await repository.countByKeyId(),
  };
}

/**
 * Nothing re-sealed and nothing skipped: no row under an old key is left. Only trusted when the
 * batch re-sealed nothing: `skippedLocked` is then exactly "rows under an old key remain".
 */
function isFinished(batch: ResealProgress): boolean {
  return batch.resealed === 0 && !batch.skippedLocked;
}

function staleRows(counts: Record<string, number>, activeKeyId: string | undefined): number {
  return Object.entries(counts).reduce((sum, [kid, count]) => (kid === activeKeyId ? sum : sum + count), 0);
}

function formatCounts(counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  return entries.length === 0 ? 'none' : entries.map(([kid, count]) => `${kid}=${count}`).join(', ');
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`rotateKeys: ${name} must be a positive integer (got ${value})`);
  return value;
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`rotateKeys: ${name} must be a non-negative integer (got ${value})`);
  return value;
}
