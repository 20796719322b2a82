import { InvalidCursorError } from './connection.errors';

/**
 * The admin list's cursor: the (account, provider) of the last row of a page, which the next
 * page starts after. Opaque to callers; anything that does not decode to such a pair is refused.
 */
export function encodeConnectionCursor(account: string, provider: string): string {
  return Buffer.from(JSON.stringify([account, provider])).toString('base64url');
}

/** null for no cursor (the first page). @throws InvalidCursorError for one this service did not issue. */
export function decodeConnectionCursor(cursor: string | null): [string, string] | null {
  if (!cursor) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2 && value.every((v) => typeof v === 'string')) return value as [string, string];
  } catch {
    // fall through
  }
  throw new InvalidCursorError();
}
