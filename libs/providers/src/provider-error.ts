/**
 * How a provider call failed, classified as DESIGN.md guarantee 5 needs it:
 * - `invalid_grant`: the grant (code or refresh token) is dead; the user must connect again.
 * - `invalid_client`: our client credentials or configuration are wrong; alert, touch nothing.
 * - `transient`: 429, 5xx, timeouts, network errors; retry later (honouring Retry-After).
 * - `rejected`: any other refusal (bad request, unexpected body); not retried automatically.
 * Messages name the provider and what happened, never a token or secret.
 */
export type ProviderErrorKind = 'invalid_grant' | 'invalid_client' | 'transient' | 'rejected';

export class ProviderError extends Error {
  override name = 'ProviderError';

  constructor(
    readonly kind: ProviderErrorKind,
    message: string,
    readonly details: { provider: string; status?: number; providerCode?: string; retryAfterSec?: number } ,
  ) {
    super(message);
  }
}
