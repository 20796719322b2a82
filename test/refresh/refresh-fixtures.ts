/**
 * Shared by the refresh suites: seeding due connections the way the broker stores them, reading
 * the refresh columns of every row, polling with generous deadlines (never timing anything).
 */
import { TokenCipher } from '@app/crypto';
import { DataSource } from 'typeorm';
import { ProviderSandbox, SandboxProvider } from '../../apps/provider-sandbox/src/provider-sandbox';
import { seedConnections, SeededConnection } from '../support/seed-connections';
import { StoredTokens } from '../support/stored-tokens';
import { TEST_ENCRYPTION_KEYS, TestBroker } from '../support/test-broker';
import { testDatabaseUrl } from '../support/test-database';

export interface RefreshRow {
  id: string;
  account: string;
  provider: string;
  status: string;
  version: number;
  expires_at: Date | null;
  refresh_token_expires_at: Date | null;
  next_refresh_at: Date | null;
  last_refreshed_at: Date | null;
  refresh_failures: number;
  last_error_code: string | null;
  last_error_message: string | null;
  lease_owner: string | null;
  lease_expires_at: Date | null;
}

/** Every connection's refresh state, by account then provider. */
export async function refreshRows(db: DataSource): Promise<RefreshRow[]> {
  return db.query(
    `SELECT id, account, provider, status, version, expires_at, refresh_token_expires_at, next_refresh_at, last_refreshed_at,
       refresh_failures, last_error_code, last_error_message, lease_owner, lease_expires_at
     FROM connections ORDER BY account, provider`,
  );
}

export async function refreshRow(db: DataSource, account: string, provider: string): Promise<RefreshRow> {
  const rows = (await refreshRows(db)).filter((r) => r.account === account && r.provider === provider);
  if (rows.length !== 1) throw new Error(`no ${provider} connection for ${account}`);
  return rows[0];
}

export const ms = (value: Date | string | null): number => (value === null ? NaN : new Date(value).getTime());

/**
 * `count` Copy.ai connections stored exactly as a connect dance stores them (bench's bulk
 * seeder: sandbox-issued tokens, the broker's planner and cipher with the test key ring),
 * then made due: next_refresh_at in the past, oldest first in account order.
 */
export async function seedDueConnections(db: DataSource, sandbox: ProviderSandbox, count: number, tokenLifetimeSec = 3600): Promise<SeededConnection[]> {
  const seeded = await seedConnections({ url: testDatabaseUrl(), keyRingSpec: TEST_ENCRYPTION_KEYS, count, sandbox, mode: 'bulk', tokenLifetimeSec });
  await db.query(
    `UPDATE connections c SET next_refresh_at = now() - interval '10 minutes' + (o.n * interval '1 millisecond')
     FROM (SELECT id, row_number() OVER (ORDER BY account) AS n FROM connections) o WHERE c.id = o.id`,
  );
  return seeded;
}

/** The access token a broker holds for a connection right now (straight from the row). */
export async function storedAccessToken(broker: TestBroker, account: string, provider: string): Promise<string> {
  const connection = await StoredTokens.of(broker.app).find(account, provider);
  if (!connection) throw new Error(`no ${provider} connection for ${account}`);
  return connection.accessToken;
}

/** Every stored access token by account (one query, opened with the broker's own cipher). */
export async function storedAccessTokens(db: DataSource, broker: TestBroker): Promise<Map<string, string>> {
  const cipher = broker.app.get(TokenCipher);
  const rows: Array<{ id: string; account: string; access_token_sealed: string }> = await db.query(
    `SELECT id, account, access_token_sealed FROM connections WHERE access_token_sealed IS NOT NULL`,
  );
  return new Map(rows.map((r) => [r.account, cipher.open(r.access_token_sealed, { connectionId: r.id, field: 'access_token' })]));
}

/** Whether the sandbox accepts `accessToken` right now (its own check endpoint, each provider's presentation). */
export async function acceptedBySandbox(sandbox: ProviderSandbox, provider: SandboxProvider, accessToken: string): Promise<boolean> {
  const url = new URL(`${sandbox.url}/${provider}/_sandbox/check`);
  const headers: Record<string, string> = {};
  if (provider === 'copernica') url.searchParams.set('access_token', accessToken);
  else headers.authorization = `Bearer ${accessToken}`;
  return (await fetch(url, { headers })).status === 200;
}

/** Runs `check` until it returns a value (not undefined), failing with `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 50): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what} after ${timeoutMs / 1000}s`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Runs `task` on every item with at most `limit` at a time. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      results[index] = await task(items[index]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
