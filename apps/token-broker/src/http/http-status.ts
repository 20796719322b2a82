import { ErrorCode } from '@app/common';

/** The one place a domain error code becomes an HTTP status. Every code has one (the record type says so). */
const HTTP_STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  [ErrorCode.ValidationFailed]: 400,
  [ErrorCode.InvalidAccount]: 400,
  [ErrorCode.ProviderUnknown]: 400,
  [ErrorCode.ApiNotSupported]: 400,
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
  [ErrorCode.NotGranted]: 403,
  [ErrorCode.NotFound]: 404,
  [ErrorCode.RouteNotFound]: 404,
  [ErrorCode.ConnectionNotFound]: 404,
  [ErrorCode.DeliveryNotFound]: 404,
  [ErrorCode.DeliveryNotFailed]: 409,
  [ErrorCode.ProviderNotFound]: 404,
  [ErrorCode.NeedsReauth]: 409,
  [ErrorCode.Revoked]: 409,
  [ErrorCode.NotRefreshable]: 409,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.CredentialRejected]: 422,
  [ErrorCode.UriTooLong]: 414,
  [ErrorCode.TokenUnreadable]: 500,
  [ErrorCode.Internal]: 500,
  [ErrorCode.ProviderMisconfigured]: 502,
  [ErrorCode.ProviderUnavailable]: 503,
  [ErrorCode.RefreshInProgress]: 503,
  [ErrorCode.NotReady]: 503,
  [ErrorCode.DatabaseUnavailable]: 503,
};

export function httpStatusOf(code: ErrorCode): number {
  return HTTP_STATUS_BY_CODE[code];
}
