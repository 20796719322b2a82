/**
 * Lifecycle events (DESIGN, "Lifecycle events (webhooks)"): what is recorded in the
 * `lifecycle_events` outbox, and the SQL that records it. Every event is inserted by the same
 * statement as the connection change it reports (a data-modifying CTE beside the UPDATE), so an
 * event exists exactly when its change committed. This file is the one place that says which
 * change records which event; the repositories splice these fragments into their statements.
 * Delivering the events is libs/webhooks' job.
 */
import { ConnectionErrorCode, ConnectionRecord } from './connection.model';
import { ConnectionRow, toRecord } from './connection.mapper';

export enum LifecycleEventType {
  /** An OAuth connect or a static credential was stored (first time or again). */
  Connected = 'connection.connected',
  /** The grant or credential is dead: the user must connect again. */
  NeedsReauth = 'connection.needs_reauth',
  /** The served token has expired and refreshing it keeps failing transiently: once per streak. */
  RefreshFailing = 'connection.refresh_failing',
  /** A refresh succeeded after connection.refresh_failing. */
  Recovered = 'connection.recovered',
  /** An admin revoked it (single or bulk). */
  Revoked = 'connection.revoked',
  /** The provider refused the broker's client credentials (invalid_client): once per streak and provider. */
  ProviderMisconfigured = 'provider.misconfigured',
}

export const LIFECYCLE_EVENT_TYPES: ReadonlyArray<LifecycleEventType> = Object.values(LifecycleEventType);

/** Why an admin revoked a connection, as the event's `reason` says: the admin action. */
export type RevocationReason = 'connection.revoke' | 'provider.revoke_all';

/**
 * Failures that leave reads answering 503 once the token has expired (a streak of these, after
 * expiry, is connection.refresh_failing). invalid_client has its own event; an unreadable token
 * is a 500, an operator's problem, not the user's.
 */
export const TRANSIENT_FAILURE_CODES: ReadonlyArray<ConnectionErrorCode> = [
  ConnectionErrorCode.ProviderUnavailable,
  ConnectionErrorCode.RefreshRejected,
  ConnectionErrorCode.DerivedTokenUnavailable,
];

/**
 * The columns of a connection snapshot: those of a ConnectionRecord (RECORD_COLUMNS' output
 * names), never a sealed value. An allowlist, so a sealed column added later stays out.
 */
export const SNAPSHOT_FIELDS = [
  'id',
  'account',
  'provider',
  'status',
  'auth_mode',
  'credential_user_email',
  'token_type',
  'scope',
  'expires_at',
  'refresh_token_expires_at',
  'has_refresh_token',
  'identity',
  'created_at',
  'updated_at',
  'connected_at',
  'last_refreshed_at',
  'last_used_at',
  'last_error_code',
  'last_error_message',
  'last_error_at',
  'version',
  'next_refresh_at',
  'refresh_failures',
  'has_derived_token',
  'derived_expires_at',
  'derived_refresh_at',
] as const satisfies ReadonlyArray<keyof ConnectionRow>;

const DATE_FIELDS = [
  'expires_at',
  'refresh_token_expires_at',
  'created_at',
  'updated_at',
  'connected_at',
  'last_refreshed_at',
  'last_used_at',
  'last_error_at',
  'next_refresh_at',
  'derived_expires_at',
  'derived_refresh_at',
] as const satisfies ReadonlyArray<(typeof SNAPSHOT_FIELDS)[number]>;

/** The connection as a snapshot stored with its event. */
export function snapshotToRecord(snapshot: Record<string, unknown>): ConnectionRecord {
  const row: Record<string, unknown> = { ...snapshot };
  for (const field of DATE_FIELDS) row[field] = typeof row[field] === 'string' ? new Date(row[field]) : null;
  return toRecord(row as unknown as ConnectionRow);
}

/**
 * A data-modifying CTE body: records `type` for each row of `source` (a CTE returning at least
 * SNAPSHOT_FIELDS, aliased `s` here) for which `when` holds. `reason` is an SQL expression over
 * `s` (or a literal): the error code, the auth mode, the admin action.
 */
export function insertConnectionEvent(type: LifecycleEventType, source: string, reason: string, when = 'true'): string {
  const snapshot = `jsonb_build_object(${SNAPSHOT_FIELDS.map((field) => `'${field}', s.${field}`).join(', ')})`;
  return `INSERT INTO lifecycle_events (type, connection_id, account, provider, reason, connection)
    SELECT '${type}', s.id, s.account, s.provider, ${reason}, ${snapshot} FROM ${source} s WHERE ${when}`;
}

/**
 * Two CTEs (`alert_opened`, `misconfigured_event`): for each row of `source` (aliased `s`) for
 * which `when` holds (invalid_client at its provider), opens the provider's misconfiguration
 * streak and, when this statement opened it, records provider.misconfigured. Concurrent openers
 * serialise on the provider_alerts row; only the first records.
 */
export function openMisconfiguredStreak(source: string, when: string): string {
  return `alert_opened AS (
      INSERT INTO provider_alerts (provider, misconfigured_since) SELECT s.provider, clock_timestamp() FROM ${source} s WHERE ${when}
      ON CONFLICT (provider) DO UPDATE SET misconfigured_since = excluded.misconfigured_since WHERE provider_alerts.misconfigured_since IS NULL
      RETURNING provider),
    misconfigured_event AS (
      INSERT INTO lifecycle_events (type, provider, reason)
      SELECT '${LifecycleEventType.ProviderMisconfigured}', provider, '${ConnectionErrorCode.InvalidClient}' FROM alert_opened)`;
}

/**
 * A data-modifying CTE body: a success with the provider's client credentials (a refresh, a code
 * exchange) ends its misconfiguration streak, so the next invalid_client is reported again. The
 * WHERE keeps the common case (no streak) free of row locks.
 */
export function closeMisconfiguredStreak(provider: string): string {
  return `UPDATE provider_alerts SET misconfigured_since = NULL WHERE provider = ${provider} AND misconfigured_since IS NOT NULL`;
}
