import type { WebhookSettings } from './app-config';
import { HTTPS_IN_PRODUCTION, isPlainHttpBeyondLoopback, readInteger } from './env-values';

/** DESIGN: deliveries are retried for at least this long before they are given up. */
export const WEBHOOK_RETRY_SPAN_MS = 24 * 3_600_000;
/** Each retry waits its nominal delay times a factor drawn from [1 - JITTER, 1 + JITTER). */
const JITTER = 0.2;
const SECRET_PATTERN = /^whsec_([A-Za-z0-9+/]+={0,2})$/;

/**
 * How long to wait before attempt `attempt + 1`, after `attempt` attempts failed: the base delay,
 * doubled per failed attempt up to the maximum, times a jitter factor (so replicas retrying a
 * shared outage spread out). A receiver's Retry-After is honoured when longer, up to the maximum.
 */
export function webhookRetryDelayMs(settings: Pick<WebhookSettings, 'retryBaseMs' | 'retryMaxMs'>, attempt: number, random: number, retryAfterMs?: number): number {
  const nominal = Math.min(settings.retryMaxMs, settings.retryBaseMs * 2 ** Math.min(attempt - 1, 40));
  const jittered = Math.round(nominal * (1 - JITTER + 2 * JITTER * random));
  if (retryAfterMs === undefined) return jittered;
  return Math.max(jittered, Math.min(retryAfterMs, settings.retryMaxMs));
}

/** The fewest attempts whose retries, each at its shortest jitter, span `spanMs`. */
export function attemptsSpanning(spanMs: number, retryBaseMs: number, retryMaxMs: number): number {
  let attempts = 1;
  let waited = 0;
  while (waited < spanMs) {
    waited += webhookRetryDelayMs({ retryBaseMs, retryMaxMs }, attempts, 0);
    attempts += 1;
  }
  return attempts;
}

/**
 * WEBHOOK_URLS, WEBHOOK_SECRET and the retry schedule. URLs are https (plain http for loopback,
 * or outside production); a secret is `whsec_` and the base64 of 24 to 64 bytes, several
 * separated by spaces or commas during a rotation (the first signs). Problems never quote a URL
 * or secret whole: a webhook URL may carry a token of the receiver's.
 */
export function readWebhookSettings(
  read: (name: string) => string | undefined,
  urlSpec: string | undefined,
  secretSpec: string | undefined,
  production: boolean,
  problems: string[],
): WebhookSettings {
  const urls: string[] = [];
  for (const [index, raw] of (urlSpec ?? '').split(',').map((u) => u.trim()).entries()) {
    if (raw === '') continue;
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      problems.push(`WEBHOOK_URLS: entry ${index + 1} is not a URL`);
      continue;
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') problems.push(`WEBHOOK_URLS: entry ${index + 1} must be an https URL (got ${url.protocol})`);
    else if (production && isPlainHttpBeyondLoopback(raw)) problems.push(`WEBHOOK_URLS: entry ${index + 1} (${url.origin}) ${HTTPS_IN_PRODUCTION}`);
    else if (urls.includes(url.href)) problems.push(`WEBHOOK_URLS: entry ${index + 1} (${url.origin}) is given twice`);
    else urls.push(url.href);
  }

  const secrets: string[] = [];
  if (urls.length > 0 || secretSpec !== undefined) {
    const given = (secretSpec ?? '').split(/[\s,]+/).filter((s) => s !== '');
    // Unset is reported with the other secrets (required in production, generated elsewhere); set to nothing is an error here.
    if (secretSpec !== undefined && given.length === 0) problems.push('WEBHOOK_SECRET: no secret given (expected whsec_ followed by the base64 of 24 to 64 random bytes)');
    for (const [index, secret] of given.entries()) {
      const match = SECRET_PATTERN.exec(secret);
      const bytes = match ? Buffer.from(match[1], 'base64').length : 0;
      if (bytes < 24 || bytes > 64) problems.push(`WEBHOOK_SECRET: secret ${index + 1} must be whsec_ followed by the base64 of 24 to 64 random bytes`);
      else secrets.push(secret);
    }
  }

  const retryBaseMs = readInteger(read, 'WEBHOOK_RETRY_BASE_MS', 5_000, [100, 3_600_000], problems);
  const retryMaxMs = readInteger(read, 'WEBHOOK_RETRY_MAX_MS', 3_600_000, [100, 86_400_000], problems);
  if (retryMaxMs < retryBaseMs) problems.push('WEBHOOK_RETRY_MAX_MS: must not be less than WEBHOOK_RETRY_BASE_MS');
  const spanning = attemptsSpanning(WEBHOOK_RETRY_SPAN_MS, retryBaseMs, Math.max(retryBaseMs, retryMaxMs));
  const maxAttempts = readInteger(read, 'WEBHOOK_MAX_ATTEMPTS', spanning, [1, 10_000], problems);
  return { urls, secrets, retryBaseMs, retryMaxMs, maxAttempts };
}
