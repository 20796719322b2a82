import { DomainError, ErrorCode } from '@app/common';
import { PROVIDER_DEFINITIONS, ProviderDefinition } from '@app/providers';
import { FORM_FIELDS, parseCredentialInput } from './credential-input';

const NOW = new Date(Date.UTC(2026, 10, 30, 12));
/** A definition that wants the owner's email beside the key, and one that takes the key alone, as the registry has them. */
const withEmail = PROVIDER_DEFINITIONS.find((d) => d.staticCredential.userEmail === 'required') as ProviderDefinition;
const keyAlone = PROVIDER_DEFINITIONS.find((d) => d.staticCredential.userEmail === 'none') as ProviderDefinition;

function refusal(run: () => unknown): DomainError {
  try {
    run();
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error('expected a DomainError');
}

describe('parseCredentialInput', () => {
  it('reads a key (trimmed of the whitespace pasting brings), the owner email where wanted, expiresAt and verify', () => {
    expect(parseCredentialInput(keyAlone, { apiKey: '  k-1\n' }, NOW)).toEqual({ credential: { apiKey: 'k-1', userEmail: null }, expiresAt: null, verify: true });
    expect(parseCredentialInput(withEmail, { apiKey: 'k-2', userEmail: 'owner@example.test', expiresAt: '2027-01-31T00:00:00Z', verify: false }, NOW)).toEqual({
      credential: { apiKey: 'k-2', userEmail: 'owner@example.test' },
      expiresAt: new Date('2027-01-31T00:00:00Z'),
      verify: false,
    });
  });

  it('lists every problem in one validation_failed message, never repeating the key', () => {
    const error = refusal(() => parseCredentialInput(keyAlone, { apiKey: 'secret with spaces', userEmail: 'x@example.test', expiresAt: '2027-01-31', verify: 1, other: true }, NOW));
    expect(error.code).toBe(ErrorCode.ValidationFailed);
    expect(error.message.split('; ')).toEqual([
      'property other should not exist',
      'apiKey must be 1 to 2048 printable characters without spaces',
      `userEmail should not be given: ${keyAlone.displayName} takes the key alone`,
      'expiresAt must be an ISO 8601 date-time with a time zone, e.g. 2027-01-31T00:00:00Z',
      'verify must be true or false',
    ]);
    expect(error.message).not.toContain('secret');
  });

  it('wants the key, and the owner email where the provider does', () => {
    expect(refusal(() => parseCredentialInput(keyAlone, {}, NOW)).message).toBe('apiKey is required');
    expect(refusal(() => parseCredentialInput(keyAlone, { apiKey: '   ' }, NOW)).message).toBe('apiKey is required');
    expect(refusal(() => parseCredentialInput(withEmail, { apiKey: 'k' }, NOW)).message).toBe(
      `userEmail is required: ${withEmail.displayName} wants the email of the user who generated the key`,
    );
    expect(refusal(() => parseCredentialInput(withEmail, { apiKey: 'k', userEmail: 'not-an-email' }, NOW)).message).toBe('userEmail must be an email address');
  });

  it('refuses a key that already expired, and anything but a JSON object', () => {
    expect(refusal(() => parseCredentialInput(keyAlone, { apiKey: 'k', expiresAt: NOW.toISOString() }, NOW)).message).toBe('expiresAt is in the past: that key no longer works');
    for (const body of [null, 'k', ['k']]) expect(refusal(() => parseCredentialInput(keyAlone, body, NOW)).code).toBe(ErrorCode.ValidationFailed);
  });

  it('takes only the key (and email) from the end user form', () => {
    expect(refusal(() => parseCredentialInput(keyAlone, { apiKey: 'k', verify: false }, NOW, FORM_FIELDS)).message).toBe('property verify should not exist');
  });
});
