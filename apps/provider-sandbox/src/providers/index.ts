/** The registry of providers the sandbox plays, in the order the contract lists them. */
import { SandboxProvider } from '../sandbox.types';
import { copernicaProvider } from './copernica.provider';
import { copperProvider } from './copper.provider';
import { copyaiProvider } from './copyai.provider';
import { ProviderSpec } from './provider-spec';

export const PROVIDER_SPECS: Readonly<Record<SandboxProvider, ProviderSpec>> = {
  copper: copperProvider,
  copernica: copernicaProvider,
  copyai: copyaiProvider,
};

export type { AuthorizeRequest, IssuedTokens, OAuthError, ProviderSpec } from './provider-spec';
