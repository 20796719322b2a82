import { DomainError, ErrorCode } from '@app/common';
import { copernica } from './definitions/copernica.provider';
import { copper } from './definitions/copper.provider';
import { copyai } from './definitions/copyai.provider';
import { ProviderDefinition } from './provider-definition';

/**
 * Every provider the broker can speak to, in the order the contract lists them. Adding one is a
 * file in definitions/ and an entry here (and a provider in the sandbox, which
 * provider-registry.spec.ts and the sandbox's coverage spec insist on); nothing else in the
 * broker names a provider.
 */
export const PROVIDER_DEFINITIONS = [copper, copernica, copyai] as const;

/** A provider's id, as the registry lists them. */
export type ProviderId = (typeof PROVIDER_DEFINITIONS)[number]['id'];

export const PROVIDER_IDS: ReadonlyArray<ProviderId> = PROVIDER_DEFINITIONS.map((p) => p.id);

export function isProviderId(value: unknown): value is ProviderId {
  return typeof value === 'string' && (PROVIDER_IDS as ReadonlyArray<string>).includes(value);
}

export function providerDefinition(id: ProviderId): ProviderDefinition {
  const found = PROVIDER_DEFINITIONS.find((p) => p.id === id);
  if (!found) throw new Error(`no provider definition for ${id}`);
  return found;
}

/** What every "unknown provider" answer says: the value (cut short, it is caller input) and the ids the registry knows. */
export function unknownProviderMessage(value: unknown): string {
  return `unknown provider "${String(value).slice(0, 40)}"; known: ${PROVIDER_IDS.join(', ')}`;
}

/** A 400 provider_unknown for a value that is not a provider id. */
export function unknownProviderError(value: unknown): DomainError {
  return new DomainError(ErrorCode.ProviderUnknown, unknownProviderMessage(value));
}
