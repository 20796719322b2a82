import { ProviderEndpoints, ProviderId } from './provider-definition';

/** A provider that is enabled (its client id is set), with everything needed to talk to it. */
export interface ProviderSettings {
  readonly id: ProviderId;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly endpoints: Required<Pick<ProviderEndpoints, 'authorizeUrl' | 'tokenUrl' | 'apiUrl'>> & Pick<ProviderEndpoints, 'revokeUrl'>;
  readonly scope: string | null;
  readonly usePkce: boolean;
}
