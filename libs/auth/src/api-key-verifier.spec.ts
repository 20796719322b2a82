import { DomainError, ErrorCode } from '@app/common';
import type { AppConfig } from '@app/config';
import type { AuditEvent, AuditLog } from '@app/observability';
import { ApiKeyVerifier } from './api-key-verifier';

describe('ApiKeyVerifier', () => {
  const config = {
    serviceApiKeys: [
      { name: 'billing', secret: 'svc-billing-0123456789abcdef' },
      { name: 'crm', secret: 'svc-crm-ünïcode-key' },
    ],
    adminApiKeys: [{ name: 'ops', secret: 'adm-ops-0123456789abcdef' }],
  } as unknown as AppConfig;
  const recorded: AuditEvent[] = [];
  const verifier = new ApiKeyVerifier(config, { record: (event: AuditEvent) => recorded.push(event) } as unknown as AuditLog);
  const attempt = { id: 'req-1', method: 'GET', url: '/tokens/acme?provider=copyai' };

  it('knows each key by its secret, and nothing close to one', () => {
    expect(verifier.identify('svc-billing-0123456789abcdef')).toEqual({ name: 'billing', role: 'service' });
    expect(verifier.identify('svc-crm-ünïcode-key')).toEqual({ name: 'crm', role: 'service' });
    expect(verifier.identify('adm-ops-0123456789abcdef')).toEqual({ name: 'ops', role: 'admin' });
    for (const guess of ['svc-billing-0123456789abcde', 'svc-billing-0123456789abcdefg', 'SVC-BILLING-0123456789ABCDEF', 'svc-crm-unicode-key', '']) {
      expect(verifier.identify(guess)).toBeUndefined();
    }
  });

  it('authorizes a bearer key of the role asked for, and refuses (audited) anything else', () => {
    expect(verifier.authorize('Bearer svc-billing-0123456789abcdef', 'service', attempt)).toEqual({ name: 'billing', role: 'service' });
    const refusal = (header: string | undefined): DomainError => {
      try {
        verifier.authorize(header, 'service', attempt);
      } catch (error) {
        return error as DomainError;
      }
      throw new Error('not refused');
    };
    expect(refusal(undefined).code).toBe(ErrorCode.Unauthorized);
    expect(refusal('Bearer svc-billing-0123456789abcdeF').code).toBe(ErrorCode.Unauthorized);
    expect(refusal('Bearer adm-ops-0123456789abcdef').code).toBe(ErrorCode.Forbidden);
    expect(recorded.map((r) => [r.actor, r.outcome])).toEqual([
      ['anonymous', 'unauthenticated'],
      ['anonymous', 'unauthenticated'],
      ['ops', 'forbidden'],
    ]);
    expect(recorded[0].detail).toEqual({ method: 'GET', path: '/tokens/acme' });
  });
});
