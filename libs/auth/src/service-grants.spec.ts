import { DomainError, ErrorCode } from '@app/common';
import { loadConfig } from '@app/config';
import { PROVIDER_IDS } from '@app/providers';
import { randomBytes } from 'node:crypto';
import { Caller } from './caller';
import { ServiceGrants } from './service-grants';

const secret = (): string => randomBytes(24).toString('base64url');
const billing: Caller = { name: 'billing', role: 'service' };
const crm: Caller = { name: 'crm', role: 'service' };
const reporting: Caller = { name: 'reporting', role: 'service' };

function grants(spec: string | undefined): ServiceGrants {
  const { config } = loadConfig({
    NODE_ENV: 'test',
    DATA_DIR: '.data/never-written',
    TOKEN_ENCRYPTION_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    SERVICE_API_KEYS: `billing:${secret()},crm:${secret()},reporting:${secret()}`,
    ADMIN_API_KEYS: `ops:${secret()}`,
    SERVICE_GRANTS: spec,
  });
  return new ServiceGrants(config);
}

/** The refusal `check` throws, or undefined when it passes. */
function refusal(check: () => unknown): DomainError | undefined {
  try {
    check();
    return undefined;
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
}

describe('ServiceGrants', () => {
  const table = grants('billing=copper/*,billing=copyai/acme-*,billing=copernica/globex,crm=*/initech,*=copernica/shared-*');

  it.each([
    ['billing', 'copper', 'anyone', true],
    ['billing', 'copyai', 'acme-42', true],
    ['billing', 'copyai', 'acme', false],
    ['billing', 'copyai', 'xacme-42', false],
    ['billing', 'copernica', 'globex', true],
    ['billing', 'copernica', 'globex-2', false],
    ['crm', 'copyai', 'initech', true],
    ['crm', 'copper', 'initech', true],
    ['crm', 'copper', 'initech2', false],
    ['reporting', 'copernica', 'shared-1', true],
    ['crm', 'copernica', 'shared-1', true],
    ['reporting', 'copper', 'shared-1', false],
  ] as const)('%s at %s for %s: granted %s', (service, provider, account, granted) => {
    const error = refusal(() => table.assertGranted({ name: service, role: 'service' }, provider, account));
    if (granted) expect(error).toBeUndefined();
    else expect(error?.code).toBe(ErrorCode.NotGranted);
  });

  it('lists the granted providers of an account when the request names none, as shared lists', () => {
    expect(table.grantedProviders(billing, 'acme-1')).toEqual(['copper', 'copyai']);
    expect(table.grantedProviders(billing, 'acme-2')).toBe(table.grantedProviders(billing, 'acme-1'));
    expect(table.grantedProviders(billing, 'globex')).toEqual(['copper', 'copernica']);
    expect(table.grantedProviders(billing, 'other')).toEqual(['copper']);
    // Every provider granted: nothing to leave out.
    expect(table.grantedProviders(crm, 'initech')).toBeUndefined();
    expect(refusal(() => table.grantedProviders(reporting, 'acme-1'))?.code).toBe(ErrorCode.NotGranted);
  });

  it('refuses with a message built from the request alone, never saying what exists', () => {
    expect(refusal(() => table.assertGranted(reporting, 'copyai', 'acme-1'))?.message).toBe(
      'the service key "reporting" is not granted copyai for account acme-1 (SERVICE_GRANTS)',
    );
    expect(refusal(() => table.grantedProviders(reporting, 'acme-1'))?.message).toBe(
      'the service key "reporting" is not granted any provider for account acme-1 (SERVICE_GRANTS)',
    );
  });

  it('refuses a service key that has no grant at all', () => {
    const onlyBilling = grants('billing=*/*');
    expect(onlyBilling.grantedProviders(billing, 'x')).toBeUndefined();
    expect(refusal(() => onlyBilling.assertGranted(crm, 'copper', 'x'))?.code).toBe(ErrorCode.NotGranted);
  });

  it('allows everything when SERVICE_GRANTS is unset, and with *=*/*', () => {
    for (const table of [grants(undefined), grants('*=*/*')]) {
      for (const provider of PROVIDER_IDS) expect(refusal(() => table.assertGranted(reporting, provider, 'any'))).toBeUndefined();
      expect(table.grantedProviders(reporting, 'any')).toBeUndefined();
    }
  });
});
