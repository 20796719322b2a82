/**
 * Domain errors: thrown anywhere below the HTTP layer with a stable string code.
 * One exception filter (apps/token-broker) maps the code to a status and the JSON
 * error shape. A message here is shown to callers, so it must never contain a token,
 * a client secret or an API key.
 */
export enum ErrorCode {
  ValidationFailed = 'validation_failed',
  InvalidAccount = 'invalid_account',
  Unauthorized = 'unauthorized',
  Forbidden = 'forbidden',
  NotFound = 'not_found',
  RouteNotFound = 'route_not_found',
  ConnectionNotFound = 'connection_not_found',
  ProviderUnknown = 'provider_unknown',
  ProviderNotConfigured = 'provider_not_configured',
  ProviderAmbiguous = 'provider_ambiguous',
  ProviderNotFound = 'provider_not_found',
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
  PayloadTooLarge = 'payload_too_large',
  UriTooLong = 'uri_too_long',
  NotReady = 'not_ready',
  /** The database cannot be reached right now (refused, reset, timed out, shutting down): 503 with Retry-After. */
  DatabaseUnavailable = 'database_unavailable',
  Internal = 'internal_error',
}

export const HTTP_STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  [ErrorCode.ValidationFailed]: 400,
  [ErrorCode.InvalidAccount]: 400,
  [ErrorCode.ProviderUnknown]: 400,
  [ErrorCode.ProviderNotConfigured]: 400,
  [ErrorCode.ProviderAmbiguous]: 400,
  [ErrorCode.StateInvalid]: 400,
  [ErrorCode.SessionInvalid]: 400,
  [ErrorCode.ReturnToNotAllowed]: 400,
  [ErrorCode.AccessDenied]: 403,
  [ErrorCode.ExchangeFailed]: 502,
  [ErrorCode.ProviderError]: 502,
  [ErrorCode.IssuerMismatch]: 400,
  [ErrorCode.Unauthorized]: 401,
  [ErrorCode.Forbidden]: 403,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.RouteNotFound]: 404,
  [ErrorCode.ConnectionNotFound]: 404,
  [ErrorCode.ProviderNotFound]: 404,
  [ErrorCode.NeedsReauth]: 409,
  [ErrorCode.Revoked]: 409,
  [ErrorCode.NotRefreshable]: 409,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.UriTooLong]: 414,
  [ErrorCode.TokenUnreadable]: 500,
  [ErrorCode.Internal]: 500,
  [ErrorCode.ProviderMisconfigured]: 502,
  [ErrorCode.ProviderUnavailable]: 503,
  [ErrorCode.RefreshInProgress]: 503,
  [ErrorCode.NotReady]: 503,
  [ErrorCode.DatabaseUnavailable]: 503,
};

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

  get status(): number {
    return HTTP_STATUS_BY_CODE[this.code];
  }
}
