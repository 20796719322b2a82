import { DomainError, ErrorCode } from '@app/common';

/** Where a page of GET /admin/audit ends: the (at, id) of its last record. */
export interface AuditPosition {
  readonly at: Date;
  /** The row id, a bigint kept as its decimal text. */
  readonly id: string;
}

const ID = /^\d{1,19}$/;

/** Opaque to callers: base64url of a short JSON pair. */
export function encodeAuditCursor(position: AuditPosition): string {
  return Buffer.from(JSON.stringify([position.at.toISOString(), position.id])).toString('base64url');
}

/** null for no cursor (the first page). @throws DomainError validation_failed for one this service did not issue. */
export function decodeAuditCursor(cursor: string | null): AuditPosition | null {
  if (!cursor) return null;
  try {
    const value: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string' && ID.test(value[1])) {
      const at = new Date(value[0]);
      if (!Number.isNaN(at.getTime())) return { at, id: value[1] };
    }
  } catch {
    // fall through
  }
  throw new DomainError(ErrorCode.ValidationFailed, 'cursor is not one this service issued; start again without it');
}
