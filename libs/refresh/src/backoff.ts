/** Exponential backoff with full jitter, capped; a provider's Retry-After wins when it is longer. */
export const BACKOFF_BASE_MS = 5_000;
export const BACKOFF_MAX_MS = 15 * 60_000;
/** A wrong client secret does not fix itself in seconds: look again every few minutes. */
export const MISCONFIGURED_RETRY_MS = 5 * 60_000;

export function backoffDelayMs(failures: number, random: () => number, retryAfterSec?: number): number {
  const exponential = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(failures, 20));
  const jittered = exponential / 2 + random() * (exponential / 2);
  return Math.max(jittered, (retryAfterSec ?? 0) * 1000);
}

/**
 * Whether a failed refresh set a retry time that has not come yet, so a read must not ask the
 * provider again (no hot loop against a provider that is down). `invalid_grant` never backs off:
 * the connection is `needs_reauth` and answers for itself.
 */
export function isBackingOff(lastErrorCode: string | null | undefined, retryAtMs: number | null, nowMs: number): retryAtMs is number {
  return lastErrorCode !== undefined && lastErrorCode !== null && lastErrorCode !== 'invalid_grant' && retryAtMs !== null && retryAtMs > nowMs;
}
