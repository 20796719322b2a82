import { copernica } from './definitions/copernica.provider';
import { copper } from './definitions/copper.provider';
import { copyai } from './definitions/copyai.provider';
import { ProviderDefinition, ProviderId } from './provider-definition';

/** Every provider the broker can speak to. Adding one is a file in definitions/ and a line here. */
export const PROVIDER_DEFINITIONS: ReadonlyArray<ProviderDefinition> = [copper, copernica, copyai];

export const PROVIDER_IDS: ReadonlyArray<ProviderId> = PROVIDER_DEFINITIONS.map((p) => p.id);

export function isProviderId(value: unknown): value is ProviderId {
  return typeof value === 'string' && (PROVIDER_IDS as ReadonlyArray<string>).includes(value);
}

export function providerDefinition(id: ProviderId): ProviderDefinition {
  const found = PROVIDER_DEFINITIONS.find((p) => p.id === id);
  if (!found) throw new Error(`no provider definition for ${id}`);
  return found;
}
