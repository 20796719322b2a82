/**
 * The registry of providers the sandbox plays, in the order the contract lists them. Adding one
 * is a file here and an entry in SANDBOX_PROVIDER_SPECS: SandboxProvider, SANDBOX_PROVIDERS and
 * every per-provider table (clients, counters, behaviours) follow from this list.
 */
import { copernicaProvider } from './copernica.provider';
import { copperProvider } from './copper.provider';
import { copyaiProvider } from './copyai.provider';
import { ProviderSpec } from './provider-spec';

export const SANDBOX_PROVIDER_SPECS = [copperProvider, copernicaProvider, copyaiProvider] as const;

/** A provider the sandbox plays, as SANDBOX_PROVIDER_SPECS lists them. */
export type SandboxProvider = (typeof SANDBOX_PROVIDER_SPECS)[number]['id'];

export const SANDBOX_PROVIDERS: readonly SandboxProvider[] = SANDBOX_PROVIDER_SPECS.map((spec) => spec.id);

/** One value per provider, made by `make`. */
export function perSandboxProvider<T>(make: (provider: SandboxProvider) => T): Record<SandboxProvider, T> {
  return Object.fromEntries(SANDBOX_PROVIDERS.map((p) => [p, make(p)])) as Record<SandboxProvider, T>;
}

export const PROVIDER_SPECS: Readonly<Record<SandboxProvider, ProviderSpec>> = perSandboxProvider(
  (p) => SANDBOX_PROVIDER_SPECS.find((spec) => spec.id === p)!,
);

export { defineSandboxProvider } from './provider-spec';
export type { AuthorizeRequest, IssuedTokens, OAuthError, PresentedApiKey, ProviderSpec } from './provider-spec';
