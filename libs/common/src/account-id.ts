import { DomainError, ErrorCode } from './domain-error';

/** DESIGN.md: account ids are opaque to the broker but restricted to a safe alphabet. */
export const ACCOUNT_ID_PATTERN = /^[A-Za-z0-9._:@-]{1,128}$/;

export function assertAccountId(account: unknown): asserts account is string {
  if (typeof account !== 'string' || !ACCOUNT_ID_PATTERN.test(account)) {
    throw new DomainError(
      ErrorCode.InvalidAccount,
      'account must be 1 to 128 characters of letters, digits and . _ : @ -',
    );
  }
}
