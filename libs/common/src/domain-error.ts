/**
 * Domain errors: thrown anywhere below the HTTP layer with a stable string code. The
 * libraries know nothing of HTTP: apps/token-broker/src/http/http-status.ts maps each code
 * to a status, and one error filter builds the JSON error shape. A message here is shown to callers, so it must never contain a token,
 * a client secret or an API key.
 */
export enum ErrorCode {
  ValidationFailed = 'validation_failed',
  InvalidAccount = 'invalid_account',
  Unauthorized = 'unauthorized',
  Forbidden = 'forbidden',
  /** A service key asked for an account or provider outside its SERVICE_GRANTS. */
  NotGranted = 'not_granted',
  NotFound = 'not_found',
  RouteNotFound = 'route_not_found',
  ConnectionNotFound = 'connection_not_found',
  ProviderUnknown = 'provider_unknown',
  ProviderNotConfigured = 'provider_not_configured',
  ProviderAmbiguous = 'provider_ambiguous',
  ProviderNotFound = 'provider_not_found',
  /** No webhook delivery has that id. */
  DeliveryNotFound = 'delivery_not_found',
  /** Only a failed (given up) webhook delivery can be retried; a pending one is still being tried. */
  DeliveryNotFailed = 'delivery_not_failed',
  NeedsReauth = 'needs_reauth',
  Revoked = 'revoked',
  NotRefreshable = 'not_refreshable',
  RefreshInProgress = 'refresh_in_progress',
  ProviderUnavailable = 'provider_unavailable',
  ProviderMisconfigured = 'provider_misconfigured',
  StateInvalid = 'state_invalid',
  SessionInvalid = 'session_invalid',
  ReturnToNotAllowed = 'return_to_not_allowed',
  AccessDenied = 'access_denied',
  ExchangeFailed = 'exchange_failed',
  /** The provider answered the authorization request with an `error` other than access_denied. */
  ProviderError = 'provider_error',
  /** RFC 9207: the callback's `iss` is not the configured issuer (or is missing). */
  IssuerMismatch = 'issuer_mismatch',
  TokenUnreadable = 'token_unreadable',
  /** The provider refused a static credential (API key) when it was checked: nothing was stored. */
  CredentialRejected = 'credential_rejected',
  /** `?api=` names an API the connection's provider has no derived token for. */
  ApiNotSupported = 'api_not_supported',
  PayloadTooLarge = 'payload_too_large',
  UriTooLong = 'uri_too_long',
  NotReady = 'not_ready',
  /** The database cannot be reached right now (refused, reset, timed out, shutting down): 503 with Retry-After. */
  DatabaseUnavailable = 'database_unavailable',
  Internal = 'internal_error',
}

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** Extra, non-secret fields merged into the error body (e.g. `providers`, `retryAfter`). */
    readonly details?: Readonly<Record<string, unknown>>,
  ) {
    super(message);
    this.name = 'DomainError';
  }
}
