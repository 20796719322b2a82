/**
 * Telling "the database cannot be reached right now" apart from every other database error, in
 * one place: the HTTP layer answers the first with 503 and Retry-After (guarantee 12), the
 * second stays a 500. Only the driver's error shapes are looked at (codes, and the few messages
 * `pg` raises without a code), never typeorm classes, so errors from a plain `pg` client, the pool
 * and TypeORM (which wraps query errors as QueryFailedError with `driverError`) are recognised alike.
 */

/** Node socket errors: nobody listens, the connection died, or the host cannot be found or reached. */
const SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * SQLSTATEs of a server that is there but will not serve: class 08 (connection exception) is
 * matched by prefix; 57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now
 * (starting up, shutting down, in recovery), 53300 too_many_connections.
 */
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);

/**
 * What `pg` and `pg-pool` (8.x) throw without a code when the server goes away or does not
 * answer in time: a socket closed under a query or during start-up, connectionTimeoutMillis,
 * a pool that could not hand out a client in time, query_timeout, and a client already broken.
 */
const DRIVER_MESSAGES = [
  /^Connection terminated( unexpectedly| due to connection timeout)?$/,
  /^timeout expired$/,
  /^timeout exceeded when trying to connect$/,
  /^Query read timeout$/,
  /^Client has encountered a connection error and is not queryable$/,
  /^Client was closed and is not queryable$/,
];

/** How deep wrapped errors are followed (cause, driverError, AggregateError members). */
const MAX_DEPTH = 4;

/** True when `error` (or an error it wraps) says the database cannot be reached now, as opposed to a query that is wrong. */
export function isDatabaseUnavailable(error: unknown): boolean {
  return unavailableCause(error, 0) !== undefined;
}

/**
 * A short, log-only description of a database error: its code and message, with any connection
 * URL cut out. It may name a host and port, so it belongs in a log line, never in an answer.
 */
export function describeDatabaseError(error: unknown): string {
  const e = (unavailableCause(error, 0) ?? error) as { code?: unknown; message?: unknown } | null;
  if (e === null || typeof e !== 'object') return String(error);
  const code = typeof e.code === 'string' ? `${e.code} ` : '';
  const message = typeof e.message === 'string' && e.message !== '' ? e.message : 'unknown error';
  return (code + message).replace(/postgres(ql)?:\/\/\S+/g, '<database url>');
}

function unavailableCause(error: unknown, depth: number): object | undefined {
  if (error === null || typeof error !== 'object' || depth > MAX_DEPTH) return undefined;
  const { code, message, cause, driverError, errors } = error as Record<string, unknown>;
  if (typeof code === 'string' && (SOCKET_CODES.has(code) || SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return error;
  // A code of another kind (a SQLSTATE like 42P01, a Node code) settles it: the message is not consulted.
  if (code === undefined && typeof message === 'string' && DRIVER_MESSAGES.some((pattern) => pattern.test(message))) return error;
  for (const inner of [driverError, cause, ...(Array.isArray(errors) ? (errors as unknown[]) : [])]) {
    if (inner === error) continue;
    const found = unavailableCause(inner, depth + 1);
    if (found) return found;
  }
  return undefined;
}
