import { ProviderIdentity } from './provider-definition';

/** Keeps only the named identity fields that are strings or numbers, as strings. */
export function readIdentity(body: Record<string, unknown>, fields: ReadonlyArray<keyof ProviderIdentity>): ProviderIdentity {
  const identity: ProviderIdentity = {};
  for (const field of fields) {
    const value = body[field];
    if (typeof value === 'string' || typeof value === 'number') identity[field] = String(value).slice(0, 256);
  }
  return identity;
}
