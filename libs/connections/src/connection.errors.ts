import { DomainError, ErrorCode } from '@app/common';

/** A stored token could not be opened: its key left the ring, or the value was altered. */
export class ConnectionUnreadableError extends DomainError {
  constructor(
    readonly connectionId: string,
    readonly keyId: string | undefined,
    readonly reason: string,
  ) {
    super(
      ErrorCode.TokenUnreadable,
      reason === 'unknown_key'
        ? `the token of connection ${connectionId} is sealed with key "${keyId ?? '?'}", which is not in TOKEN_ENCRYPTION_KEYS`
        : `the token of connection ${connectionId} cannot be opened (${reason}); reconnect the account`,
      { connectionId },
    );
  }
}

export class InvalidCursorError extends DomainError {
  constructor() {
    super(ErrorCode.ValidationFailed, 'cursor is not one this service issued; start again without it');
  }
}
