import { AppConfig } from '@app/config';
import { Injectable } from '@nestjs/common';
import { Webhook } from 'standardwebhooks';
import { Agent, request } from 'undici';

/** DESIGN: no answer within this long is a failed attempt. */
export const WEBHOOK_TIMEOUT_MS = 10_000;
/** What is read of a receiver's answer (its body is not used; reading it frees the connection, and a longer one closes it). */
const MAX_ANSWER_BYTES = 64 * 1024;

/** What one POST came to. */
export interface SendResult {
  /** The receiver's HTTP status; null when no answer came (timeout, refused, reset). */
  status: number | null;
  /** Its Retry-After, in ms, when it sent one. */
  retryAfterMs?: number;
  /** Why it failed, in words safe to store and show (no URL, no secret). */
  error?: string;
}

/**
 * Signs and POSTs webhook bodies (Standard Webhooks: `webhook-id`, `webhook-timestamp`,
 * `webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, signed with the first
 * WEBHOOK_SECRET) over one keep-alive agent, WEBHOOK_TIMEOUT_MS per attempt.
 */
@Injectable()
export class WebhookSender {
  private readonly agent = new Agent({ keepAliveTimeout: 4_000, headersTimeout: WEBHOOK_TIMEOUT_MS, bodyTimeout: WEBHOOK_TIMEOUT_MS });
  private readonly signer: Webhook | null;

  constructor(config: AppConfig) {
    const secret = config.webhooks.secrets[0];
    this.signer = secret === undefined ? null : new Webhook(secret);
  }

  async send(endpoint: string, webhookId: string, body: string, now: Date): Promise<SendResult> {
    if (this.signer === null) return { status: null, error: 'WEBHOOK_SECRET is not set' };
    const headers = {
      'content-type': 'application/json',
      'user-agent': 'token-broker-webhooks',
      'webhook-id': webhookId,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': this.signer.sign(webhookId, now, body),
    };
    try {
      const response = await request(endpoint, { method: 'POST', headers, body, dispatcher: this.agent, signal: AbortSignal.timeout(WEBHOOK_TIMEOUT_MS) });
      await response.body.dump({ limit: MAX_ANSWER_BYTES }).catch(() => undefined);
      const retryAfterMs = parseRetryAfter(response.headers['retry-after'], now.getTime());
      return { status: response.statusCode, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
    } catch (error) {
      return { status: null, error: describeFailure(error) };
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** Retry-After as seconds or an HTTP date (RFC 9110 §10.2.3); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | string[] | undefined, nowMs: number): number | undefined {
  const raw = Array.isArray(value) ? value[0] : value;
  if (raw === undefined) return undefined;
  if (/^\d{1,9}$/.test(raw.trim())) return Number(raw.trim()) * 1000;
  const at = Date.parse(raw);
  return Number.isNaN(at) ? undefined : Math.max(0, at - nowMs);
}

/** A network failure in a few words: its code, never the URL (which may carry the receiver's token). */
function describeFailure(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  const name = (error as { name?: unknown }).name;
  if (name === 'TimeoutError' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return `no answer within ${WEBHOOK_TIMEOUT_MS / 1000} s`;
  if (typeof code === 'string' && /^[A-Z_]{2,40}$/.test(code)) return `no answer (${code})`;
  return 'no answer';
}
