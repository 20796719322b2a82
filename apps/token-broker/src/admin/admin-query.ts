import type { AuditFilter } from '@app/audit';
import { ACCOUNT_ID_PATTERN, DomainError, ErrorCode } from '@app/common';
import { ConnectionFilter, ConnectionStatus, LIFECYCLE_EVENT_TYPES, LifecycleEventType } from '@app/connections';
import { AUDIT_ACTIONS, AuditAction } from '@app/observability';
import { isProviderId, ProviderId, unknownProviderMessage } from '@app/providers';
import { DELIVERY_STATUSES, DeliveryFilter, DeliveryStatus } from '@app/webhooks';

export const DEFAULT_PAGE_SIZE = 50;
export const MAX_PAGE_SIZE = 200;
/** Our cursors are base64url of a short JSON pair; anything longer was not issued here. */
const MAX_CURSOR_LENGTH = 512;
const CURSOR_ALPHABET = /^[A-Za-z0-9_-]+$/;
const STATUSES: ReadonlyArray<string> = Object.values(ConnectionStatus);
/** Who an audit record names: a key name (SERVICE_API_KEYS/ADMIN_API_KEYS names), system, end_user or anonymous. */
const ACTOR = /^[A-Za-z0-9_.-]{1,64}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2}))?$/;

export interface ListQuery {
  filter: ConnectionFilter;
  cursor: string | null;
  limit: number;
}

/**
 * Query parsing for the admin routes, by hand like GET /tokens' (one message listing every
 * problem). An empty value (`?provider=`) counts as absent, so a form that submits every field
 * still works.
 */
export function parseListQuery(query: Record<string, unknown>): ListQuery {
  const problems = unexpectedKeys(query, ['provider', 'status', 'cursor', 'limit']);
  const provider = optionalString(query, 'provider', problems);
  const status = optionalString(query, 'status', problems);
  const paging = readPaging(query, problems);

  if (status !== undefined && !STATUSES.includes(status)) problems.push(`status must be one of ${STATUSES.join(', ')}`);
  const { cursor, limit } = checkPaging(paging, problems);
  const knownProvider = checkProvider(provider, problems);
  return { filter: { provider: knownProvider, status: status as ConnectionStatus | undefined }, cursor, limit };
}

export interface AuditQuery {
  filter: AuditFilter;
  cursor: string | null;
  limit: number;
}

/** `GET /admin/audit?account=&provider=&actor=&action=&since=&until=&cursor=&limit=`. */
export function parseAuditQuery(query: Record<string, unknown>): AuditQuery {
  const problems = unexpectedKeys(query, ['account', 'provider', 'actor', 'action', 'since', 'until', 'cursor', 'limit']);
  const account = optionalString(query, 'account', problems);
  const provider = optionalString(query, 'provider', problems);
  const actor = optionalString(query, 'actor', problems);
  const action = optionalString(query, 'action', problems);
  const since = optionalTime(query, 'since', problems);
  const until = optionalTime(query, 'until', problems);
  const { cursor, limit } = checkPaging(readPaging(query, problems), problems);

  if (account !== undefined && !ACCOUNT_ID_PATTERN.test(account)) problems.push('account must be 1 to 128 characters of letters, digits and . _ : @ -');
  if (actor !== undefined && !ACTOR.test(actor)) problems.push('actor must be a key name (letters, digits, . _ -), system, end_user or anonymous');
  if (action !== undefined && !isAuditAction(action)) problems.push(`action must be one of ${AUDIT_ACTIONS.join(', ')}`);
  const knownProvider = checkProvider(provider, problems);
  return { filter: { account, provider: knownProvider, actor, action: action as AuditAction | undefined, since, until }, cursor, limit };
}

export interface DeliveryQuery {
  filter: Omit<DeliveryFilter, 'before'>;
  /** Deliveries older than this id. */
  cursor: string | null;
  limit: number;
}

/** `GET /admin/webhook-deliveries?status=&type=&account=&cursor=&limit=`; the cursor is a delivery id. */
export function parseDeliveryQuery(query: Record<string, unknown>): DeliveryQuery {
  const problems = unexpectedKeys(query, ['status', 'type', 'account', 'cursor', 'limit']);
  const status = optionalString(query, 'status', problems);
  const type = optionalString(query, 'type', problems);
  const account = optionalString(query, 'account', problems);
  const { cursor, limit } = checkPaging(readPaging(query, problems), problems);

  if (status !== undefined && !DELIVERY_STATUSES.some((known) => known === status)) problems.push(`status must be one of ${DELIVERY_STATUSES.join(', ')}`);
  if (type !== undefined && !(LIFECYCLE_EVENT_TYPES as ReadonlyArray<string>).includes(type)) problems.push(`type must be one of ${LIFECYCLE_EVENT_TYPES.join(', ')}`);
  if (account !== undefined && !ACCOUNT_ID_PATTERN.test(account)) problems.push('account must be 1 to 128 characters of letters, digits and . _ : @ -');
  if (cursor !== null && !DELIVERY_ID.test(cursor) && !problems.some((problem) => problem.startsWith('cursor'))) problems.push('cursor is not one this service issued; start again without it');
  if (problems.length > 0) throw new DomainError(ErrorCode.ValidationFailed, problems.join('; '));
  return { filter: { status: status as DeliveryStatus | undefined, type: type as LifecycleEventType | undefined, account }, cursor, limit };
}

/** A delivery id as routes and cursors carry it: the table's bigint. */
export const DELIVERY_ID = /^[1-9]\d{0,17}$/;

/** `?provider=` of the single-connection routes: optional, and a known provider id when given. */
export function parseProviderQuery(query: Record<string, unknown>): ProviderId | undefined {
  const problems = unexpectedKeys(query, ['provider']);
  const provider = optionalString(query, 'provider', problems);
  return checkProvider(provider, problems);
}

/** Routes that take no query parameters say so rather than ignore a typo. */
export function assertNoQuery(query: Record<string, unknown>): void {
  const problems = unexpectedKeys(query, []);
  if (problems.length > 0) throw new DomainError(ErrorCode.ValidationFailed, problems.join('; '));
}

/**
 * Throws for the problems found so far; an unknown provider alone gets its own code
 * (provider_unknown, as GET /tokens answers), anything else validation_failed.
 */
function checkProvider(provider: string | undefined, problems: string[]): ProviderId | undefined {
  const unknown = provider !== undefined && !isProviderId(provider);
  const unknownMessage = unknownProviderMessage(provider ?? '');
  if (problems.length > 0) throw new DomainError(ErrorCode.ValidationFailed, [...problems, ...(unknown ? [unknownMessage] : [])].join('; '));
  if (unknown) throw new DomainError(ErrorCode.ProviderUnknown, unknownMessage);
  return provider;
}

/** `?cursor=&limit=` of a paged route, as given. */
function readPaging(query: Record<string, unknown>, problems: string[]): { cursor?: string; limitText?: string } {
  return { cursor: optionalString(query, 'cursor', problems), limitText: optionalString(query, 'limit', problems) };
}

/** The page asked for; what is wrong with it is added to `problems`. */
function checkPaging({ cursor, limitText }: { cursor?: string; limitText?: string }, problems: string[]): { cursor: string | null; limit: number } {
  if (cursor !== undefined && (cursor.length > MAX_CURSOR_LENGTH || !CURSOR_ALPHABET.test(cursor))) {
    problems.push('cursor is not one this service issued; start again without it');
  }
  let limit = DEFAULT_PAGE_SIZE;
  if (limitText !== undefined) {
    const value = /^\d{1,6}$/.test(limitText) ? Number(limitText) : NaN;
    if (!Number.isInteger(value) || value < 1 || value > MAX_PAGE_SIZE) problems.push(`limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`);
    else limit = value;
  }
  return { cursor: cursor ?? null, limit };
}

/** An ISO 8601 time with a date and, when it has a time of day, a zone (`2026-06-01`, `2026-06-01T12:00:00Z`). */
function optionalTime(query: Record<string, unknown>, key: string, problems: string[]): Date | undefined {
  const text = optionalString(query, key, problems);
  if (text === undefined) return undefined;
  const at = ISO_TIME.test(text) ? new Date(text) : undefined;
  if (at === undefined || Number.isNaN(at.getTime())) {
    problems.push(`${key} must be an ISO 8601 time such as 2026-06-01T12:00:00Z`);
    return undefined;
  }
  return at;
}

function isAuditAction(value: string): value is AuditAction {
  return (AUDIT_ACTIONS as ReadonlyArray<string>).includes(value);
}

function unexpectedKeys(query: Record<string, unknown>, allowed: ReadonlyArray<string>): string[] {
  return Object.keys(query)
    .filter((key) => !allowed.includes(key))
    .map((key) => `property ${key.slice(0, 40)} should not exist`);
}

function optionalString(query: Record<string, unknown>, key: string, problems: string[]): string | undefined {
  const value = query[key];
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') {
    problems.push(`${key} must be given once`);
    return undefined;
  }
  return value;
}
