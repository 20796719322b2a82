import { ACCOUNT_ID_PATTERN } from '@app/common';
import { isProviderId, PROVIDER_IDS, ProviderId } from '@app/providers';

/** Which accounts a grant covers: every one, one id, or the ids starting with a prefix. */
export type AccountPattern = { readonly kind: 'any' } | { readonly kind: 'exact'; readonly id: string } | { readonly kind: 'prefix'; readonly prefix: string };

/**
 * One entry of SERVICE_GRANTS, `service=provider/accountPattern`: the service key named
 * `service` (or every service key, `*`) may read tokens of, and open connect sessions for, the
 * accounts matching the pattern at `provider` (or at every provider, `*`).
 */
export interface ServiceGrant {
  readonly service: string;
  readonly provider: ProviderId | '*';
  readonly account: AccountPattern;
}

const ENTRY = /^([^=]*)=([^/]*)\/(.*)$/;
/** An account prefix is an account id's start: the same characters, one shorter at most. */
const ACCOUNT_PREFIX = /^[A-Za-z0-9._:@-]{1,127}$/;

/**
 * Parses SERVICE_GRANTS (`billing=copper/*,billing=copyai/acme-*,crm=*\/*`). Every problem is
 * pushed to `problems`, each naming its entry, so that one start-up message lists them all; a
 * grant naming a service key SERVICE_API_KEYS lacks, or a provider the registry lacks, is one.
 */
export function parseServiceGrants(spec: string, serviceKeyNames: ReadonlyArray<string>, problems: string[]): ServiceGrant[] {
  const grants: ServiceGrant[] = [];
  spec.split(',').forEach((raw, index) => {
    const entry = raw.trim();
    const where = `SERVICE_GRANTS entry ${index + 1}`;
    const match = ENTRY.exec(entry);
    if (!match) {
      problems.push(`${where}: expected service=provider/accountPattern (e.g. billing=${PROVIDER_IDS[0]}/acme-*), got "${entry.slice(0, 80)}"`);
      return;
    }
    const [, service, provider, account] = match;
    const entryProblems: string[] = [];
    if (service !== '*' && !serviceKeyNames.includes(service)) {
      entryProblems.push(`"${service.slice(0, 64)}" is not a key name in SERVICE_API_KEYS (${serviceKeyNames.join(', ') || 'none'}) nor *`);
    }
    if (provider !== '*' && !isProviderId(provider)) {
      entryProblems.push(`"${provider.slice(0, 64)}" is not a provider (${PROVIDER_IDS.join(', ')}) nor *`);
    }
    const pattern = parseAccountPattern(account);
    if (!pattern) {
      entryProblems.push(`"${account.slice(0, 140)}" is not an account pattern: an account id, a prefix ending in * (acme-*) or *`);
    }
    if (entryProblems.length > 0 || !pattern) {
      problems.push(`${where}: ${entryProblems.join('; ')}`);
      return;
    }
    grants.push({ service, provider: provider as ProviderId | '*', account: pattern });
  });
  return grants;
}

function parseAccountPattern(text: string): AccountPattern | undefined {
  if (text === '*') return { kind: 'any' };
  if (text.endsWith('*')) {
    const prefix = text.slice(0, -1);
    return ACCOUNT_PREFIX.test(prefix) ? { kind: 'prefix', prefix } : undefined;
  }
  return ACCOUNT_ID_PATTERN.test(text) ? { kind: 'exact', id: text } : undefined;
}

/** A grant as SERVICE_GRANTS spells it, for logs and the configuration summary. */
export function formatServiceGrant(grant: ServiceGrant): string {
  const account = grant.account.kind === 'any' ? '*' : grant.account.kind === 'prefix' ? `${grant.account.prefix}*` : grant.account.id;
  return `${grant.service}=${grant.provider}/${account}`;
}
