import { DomainError, ErrorCode } from '@app/common';
import { AppConfig, ServiceGrant } from '@app/config';
import { PROVIDER_IDS, ProviderId } from '@app/providers';
import { Injectable } from '@nestjs/common';
import { Caller } from './caller';

/** One bit per provider, in registry order: a set of providers is a small number. */
const PROVIDER_BIT: ReadonlyMap<string, number> = new Map(PROVIDER_IDS.map((id, index) => [id, 1 << index]));
const ALL_PROVIDERS = (1 << PROVIDER_IDS.length) - 1;
/** Every set of providers as a frozen list, built once: a lookup hands out one of these, never a new array. */
const PROVIDER_SETS: ReadonlyArray<ReadonlyArray<ProviderId>> = Array.from({ length: ALL_PROVIDERS + 1 }, (_, mask) =>
  Object.freeze(PROVIDER_IDS.filter((_id, index) => (mask & (1 << index)) !== 0)),
);

/** One service's grants, compiled: providers granted for every account, per exact id, per prefix. */
interface CompiledGrants {
  anyAccount: number;
  readonly exact: Map<string, number>;
  readonly prefixes: Array<{ readonly prefix: string; readonly providers: number }>;
}

/**
 * SERVICE_GRANTS as a lookup: which providers a service key may read and connect for an account.
 * A check is a map lookup and a few comparisons in memory, made before any cache or database
 * lookup, so a refusal (`403 not_granted`) is the same whether or not the account exists, and
 * costs the read path next to nothing. When SERVICE_GRANTS is unset (outside production only)
 * every service key may do everything. Admin keys never come here: grants limit services.
 */
@Injectable()
export class ServiceGrants {
  /** By service key name; a key with no grant is absent. null: SERVICE_GRANTS unset. */
  private readonly byService: ReadonlyMap<string, CompiledGrants> | null;

  constructor(config: AppConfig) {
    this.byService = config.serviceGrants === null ? null : compile(config.serviceGrants, config.serviceApiKeys.map((k) => k.name));
  }

  /** @throws DomainError not_granted unless `caller` may read or connect `account` at `provider`. */
  assertGranted(caller: Caller, provider: ProviderId, account: string): void {
    const granted = this.providerMask(caller, account);
    if ((granted & (PROVIDER_BIT.get(provider) ?? 0)) === 0) throw notGranted(caller, account, provider);
  }

  /**
   * The providers `caller` may read for `account`, when the request names none: only their
   * connections are considered. undefined when every provider is granted (nothing to leave out).
   * @throws DomainError not_granted when none is.
   */
  grantedProviders(caller: Caller, account: string): ReadonlyArray<ProviderId> | undefined {
    const granted = this.providerMask(caller, account);
    if (granted === ALL_PROVIDERS) return undefined;
    if (granted === 0) throw notGranted(caller, account);
    return PROVIDER_SETS[granted];
  }

  private providerMask(caller: Caller, account: string): number {
    if (this.byService === null) return ALL_PROVIDERS;
    const grants = this.byService.get(caller.name);
    if (grants === undefined) return 0;
    let granted = grants.anyAccount;
    if (granted === ALL_PROVIDERS) return granted;
    const exact = grants.exact.get(account);
    if (exact !== undefined) granted |= exact;
    for (const { prefix, providers } of grants.prefixes) {
      if ((granted & providers) !== providers && account.startsWith(prefix)) granted |= providers;
    }
    return granted;
  }
}

function compile(grants: ReadonlyArray<ServiceGrant>, serviceKeyNames: ReadonlyArray<string>): Map<string, CompiledGrants> {
  const byService = new Map<string, CompiledGrants>();
  for (const grant of grants) {
    // `*` grants to every configured service key; config has checked that every other name is one.
    for (const service of grant.service === '*' ? serviceKeyNames : [grant.service]) {
      let compiled = byService.get(service);
      if (compiled === undefined) {
        compiled = { anyAccount: 0, exact: new Map(), prefixes: [] };
        byService.set(service, compiled);
      }
      const providers = grant.provider === '*' ? ALL_PROVIDERS : (PROVIDER_BIT.get(grant.provider) ?? 0);
      const account = grant.account;
      if (account.kind === 'any') compiled.anyAccount |= providers;
      else if (account.kind === 'exact') compiled.exact.set(account.id, (compiled.exact.get(account.id) ?? 0) | providers);
      else compiled.prefixes.push({ prefix: account.prefix, providers });
    }
  }
  return byService;
}

/**
 * The one refusal, built from the request alone (never from what is stored), so it reads the
 * same for an account that exists and one that does not.
 */
function notGranted(caller: Caller, account: string, provider?: ProviderId): DomainError {
  const what = provider === undefined ? 'any provider' : provider;
  return new DomainError(ErrorCode.NotGranted, `the service key "${caller.name}" is not granted ${what} for account ${account} (SERVICE_GRANTS)`);
}
