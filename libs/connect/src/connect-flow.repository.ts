import { AuthMode } from '@app/connections';
import { Injectable } from '@nestjs/common';
import { DataSource } from 'typeorm';

export interface ConnectSession {
  id: string;
  account: string;
  provider: string;
  returnTo: string | null;
  createdBy: string;
  expiresAt: Date;
  /** What the link connects: the OAuth dance, or an API key the end user enters in a form. */
  authMode: AuthMode;
  /** Keys the provider refused through this link so far. */
  failedAttempts: number;
}

export type SessionRefusal = 'unknown' | 'used' | 'expired' | 'wrong_provider';

export interface PendingAuthorization {
  provider: string;
  session: ConnectSession;
  browserHash: Buffer;
  codeVerifierSealed: string | null;
  redirectUri: string;
  expiresAt: Date;
}

/**
 * The connect flow's short-lived rows: one-time connect sessions and pending OAuth `state`s.
 * Only digests of browser-held values are stored. Consuming is a single atomic statement, so
 * a link or a state is used at most once even when two requests race.
 */
export abstract class ConnectFlowRepository {
  abstract createSession(input: Omit<ConnectSession, 'id' | 'failedAttempts'> & { tokenHash: Buffer }): Promise<ConnectSession>;
  /** The session a link names, or why it cannot be used, without using it up (the confirmation page, and a HEAD). */
  abstract findSession(tokenHash: Buffer, provider: string, now: Date): Promise<ConnectSession | SessionRefusal>;
  /** Uses the link up, atomically: at most one caller gets the session. Only a link of `authMode` is used up. */
  abstract consumeSession(tokenHash: Buffer, provider: string, now: Date, authMode: AuthMode): Promise<ConnectSession | SessionRefusal>;
  /**
   * Counts a refused key against the link and answers the count. At `limit` the link is used up
   * in the same statement, so no further attempt gets through, however many race.
   */
  abstract recordFailedAttempt(sessionId: string, now: Date, limit: number): Promise<number>;
  abstract savePendingAuthorization(stateHash: Buffer, pending: Omit<PendingAuthorization, 'session'> & { sessionId: string }): Promise<void>;
  /** Deletes and returns the pending authorization for this state, or null if there is none (replayed or never issued). */
  abstract takePendingAuthorization(stateHash: Buffer): Promise<PendingAuthorization | null>;
  abstract deleteExpired(now: Date): Promise<number>;
}

interface SessionRow {
  id: string;
  account: string;
  provider: string;
  return_to: string | null;
  created_by: string;
  expires_at: Date;
  auth_mode: AuthMode;
  failed_attempts: number;
  used_at?: Date | null;
}

@Injectable()
export class TypeormConnectFlowRepository extends ConnectFlowRepository {
  constructor(private readonly dataSource: DataSource) {
    super();
  }

  async createSession(input: Omit<ConnectSession, 'id' | 'failedAttempts'> & { tokenHash: Buffer }): Promise<ConnectSession> {
    const rows: SessionRow[] = await this.dataSource.query(
      `INSERT INTO connect_sessions (token_hash, account, provider, return_to, created_by, expires_at, auth_mode)
       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${SESSION_COLUMNS}`,
      [input.tokenHash, input.account, input.provider, input.returnTo, input.createdBy, input.expiresAt, input.authMode],
    );
    return toSession(rows[0]);
  }

  async findSession(tokenHash: Buffer, provider: string, now: Date): Promise<ConnectSession | SessionRefusal> {
    const [row] = await this.dataSource.query<SessionRow[]>(
      `SELECT ${SESSION_COLUMNS}, used_at FROM connect_sessions WHERE token_hash = $1`,
      [tokenHash],
    );
    if (!row) return 'unknown';
    if (row.provider !== provider) return 'wrong_provider';
    if (row.used_at) return 'used';
    if (row.expires_at.getTime() <= now.getTime()) return 'expired';
    return toSession(row);
  }

  async consumeSession(tokenHash: Buffer, provider: string, now: Date, authMode: AuthMode): Promise<ConnectSession | SessionRefusal> {
    const [used] = await this.dataSource.query<[SessionRow[], number]>(
      `UPDATE connect_sessions SET used_at = $3
       WHERE token_hash = $1 AND provider = $2 AND auth_mode = $4 AND used_at IS NULL AND expires_at > $3
       RETURNING ${SESSION_COLUMNS}`,
      [tokenHash, provider, now, authMode],
    );
    if (used[0]) return toSession(used[0]);
    const [row] = await this.dataSource.query<SessionRow[]>(`SELECT provider, used_at, expires_at, auth_mode FROM connect_sessions WHERE token_hash = $1`, [
      tokenHash,
    ]);
    if (!row) return 'unknown';
    // A link for the other way in is not this flow's: to it, unknown.
    if (row.auth_mode !== authMode) return 'unknown';
    if (row.provider !== provider) return 'wrong_provider';
    if (row.used_at) return 'used';
    return 'expired';
  }

  async recordFailedAttempt(sessionId: string, now: Date, limit: number): Promise<number> {
    const [rows] = await this.dataSource.query<[Array<{ failed_attempts: number }>, number]>(
      `UPDATE connect_sessions SET failed_attempts = failed_attempts + 1,
         used_at = CASE WHEN failed_attempts + 1 >= $3 THEN COALESCE(used_at, $2) ELSE used_at END
       WHERE id = $1 RETURNING failed_attempts`,
      [sessionId, now, limit],
    );
    return rows[0]?.failed_attempts ?? limit;
  }

  async savePendingAuthorization(
    stateHash: Buffer,
    pending: Omit<PendingAuthorization, 'session'> & { sessionId: string },
  ): Promise<void> {
    await this.dataSource.query(
      `INSERT INTO oauth_states (state_hash, provider, session_id, browser_hash, code_verifier_sealed, redirect_uri, expires_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [stateHash, pending.provider, pending.sessionId, pending.browserHash, pending.codeVerifierSealed, pending.redirectUri, pending.expiresAt],
    );
  }

  async takePendingAuthorization(stateHash: Buffer): Promise<PendingAuthorization | null> {
    const rows: Array<SessionRow & {
      state_provider: string;
      browser_hash: Buffer;
      code_verifier_sealed: string | null;
      redirect_uri: string;
      state_expires_at: Date;
    }> = await this.dataSource.query(
      `WITH taken AS (DELETE FROM oauth_states WHERE state_hash = $1 RETURNING *)
       SELECT t.provider AS state_provider, t.browser_hash, t.code_verifier_sealed, t.redirect_uri, t.expires_at AS state_expires_at,
              s.id, s.account, s.provider, s.return_to, s.created_by, s.expires_at, s.auth_mode, s.failed_attempts
       FROM taken t JOIN connect_sessions s ON s.id = t.session_id`,
      [stateHash],
    );
    const row = rows[0];
    if (!row) return null;
    return {
      provider: row.state_provider,
      session: toSession(row),
      browserHash: row.browser_hash,
      codeVerifierSealed: row.code_verifier_sealed,
      redirectUri: row.redirect_uri,
      expiresAt: row.state_expires_at,
    };
  }

  async deleteExpired(now: Date): Promise<number> {
    const [, states] = await this.dataSource.query<[unknown, number]>(`DELETE FROM oauth_states WHERE expires_at < $1`, [now]);
    // Sessions are kept a day past expiry so a late click still says "expired" rather than "unknown".
    const [, sessions] = await this.dataSource.query<[unknown, number]>(`DELETE FROM connect_sessions WHERE expires_at < $1::timestamptz - interval '1 day'`, [
      now,
    ]);
    return states + sessions;
  }
}

const SESSION_COLUMNS = 'id, account, provider, return_to, created_by, expires_at, auth_mode, failed_attempts';

function toSession(row: SessionRow): ConnectSession {
  return {
    id: row.id,
    account: row.account,
    provider: row.provider,
    returnTo: row.return_to,
    createdBy: row.created_by,
    expiresAt: row.expires_at,
    authMode: row.auth_mode,
    failedAttempts: row.failed_attempts,
  };
}
