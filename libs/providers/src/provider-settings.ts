import { ClientAuthMethod, ProviderEndpoints } from './provider-definition';
import type { ProviderId } from './provider-registry';

/**
 * A provider's API, known whether or not its OAuth client is configured: what checking an API key
 * and minting a derived token need. `apiUrl` is null only when the provider has no default and none is configured.
 */
export interface ProviderApi {
  readonly id: ProviderId;
  readonly apiUrl: string | null;
  /** Where the provider's derived token is minted (`<PREFIX>_AUTHENTICATE_URL` for Copernica); null when it derives none. */
  readonly derivedTokenUrl: string | null;
}

/** A provider that is enabled (its client id is set), with everything needed to talk to it. */
export interface ProviderSettings {
  readonly id: ProviderId;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly endpoints: Required<Pick<ProviderEndpoints, 'authorizeUrl' | 'tokenUrl' | 'apiUrl'>> & Pick<ProviderEndpoints, 'revokeUrl'>;
  readonly scope: string | null;
  readonly usePkce: boolean;
  /** `<PREFIX>_CLIENT_AUTH`, else the definition's default; a `query_get` exchange always carries the credentials in its query. */
  readonly clientAuth: ClientAuthMethod;
  /** `<PREFIX>_AUTHORIZE_PARAMS`: extra authorize-request parameters (never state, redirect_uri, client_id, response_type or PKCE). */
  readonly authorizeParams: Readonly<Record<string, string>>;
  /** `<PREFIX>_ISSUER` (RFC 9207): when set, a callback must carry `iss` equal to it. */
  readonly issuer: string | null;
}
