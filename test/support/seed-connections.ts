/**
 * Stores N Copy.ai connections exactly as a finished connect dance would: the sandbox issues
 * the tokens, the broker's own token-response reader normalises them, the broker's
 * RefreshPlanner schedules them and the broker's TokenCipher (same key ring) seals them.
 *
 * Two ways in: `repository` calls PostgresConnectionRepository.saveConnected (the code the
 * connect flow runs; ~3 statements a row), `bulk` writes the very same column values with one
 * multi-row INSERT per batch (what makes 100,000 connections take seconds, not minutes).
 * The refresh and admin suites seed through it, and so does the benchmark, which afterwards
 * checks that the broker opens what was stored.
 */
import { Clock } from '@app/common';
import { ConnectionSealer, PostgresConnectionRepository, SaveConnectedInput } from '@app/connections';
import { KeyRing, TokenCipher } from '@app/crypto';
import { dataSourceOptions } from '@app/database';
import { readTokenResponse } from '@app/providers';
import { issuedTokenSet, RefreshPlanner } from '@app/refresh';
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import type { ProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';

export type SeedMode = 'bulk' | 'repository';

export interface SeedOptions {
  url: string;
  keyRingSpec: string;
  count: number;
  sandbox: ProviderSandbox;
  mode: SeedMode;
  /**
   * Access token lifetime: for the read benchmark long enough that no read during the run needs a
   * refresh; for the sweep a range (each row gets a uniformly random lifetime within it).
   */
  tokenLifetimeSec: number | { minSec: number; maxSec: number };
}

export interface SeededConnection {
  account: string;
  accessToken: string;
  refreshToken: string | null;
}

const PROVIDER = 'copyai';
const BULK_BATCH_ROWS = 2_000;
const REPOSITORY_CONCURRENCY = 16;

export function benchAccount(index: number): string {
  return `bench-user-${String(index).padStart(6, '0')}`;
}

export async function seedConnections(options: SeedOptions): Promise<SeededConnection[]> {
  const clock = new Clock();
  const planner = new RefreshPlanner(clock);
  const cipher = new TokenCipher(KeyRing.parse(options.keyRingSpec));
  const now = clock.now();

  // What ConnectService.handleCallback builds from a token response (see libs/connect).
  const inputs: SaveConnectedInput[] = [];
  const lifetime = options.tokenLifetimeSec;
  const lifetimeSec = (): number => (typeof lifetime === 'number' ? lifetime : lifetime.minSec + Math.floor(Math.random() * (lifetime.maxSec - lifetime.minSec + 1)));
  for (let i = 0; i < options.count; i++) {
    const issued = readTokenResponse(PROVIDER, options.sandbox.issueTokens(PROVIDER, { expiresInSec: lifetimeSec() }));
    const tokens = issuedTokenSet(issued, now);
    inputs.push({
      account: benchAccount(i),
      provider: PROVIDER,
      tokens,
      identity: null,
      nextRefreshAt: planner.nextRefreshAt(tokens.expiresAt, issued.refreshToken !== null, now),
    });
  }

  if (options.mode === 'repository') await saveThroughRepository(options.url, cipher, clock, inputs);
  else await insertInBulk(options.url, cipher, now, inputs);
  return inputs.map((input) => ({ account: input.account, accessToken: input.tokens.accessToken, refreshToken: input.tokens.refreshToken ?? null }));
}

async function saveThroughRepository(url: string, cipher: TokenCipher, clock: Clock, inputs: SaveConnectedInput[]): Promise<void> {
  const dataSource = new DataSource(dataSourceOptions(url, { extra: { max: REPOSITORY_CONCURRENCY } }));
  await dataSource.initialize();
  try {
    const repository = new PostgresConnectionRepository(dataSource, new ConnectionSealer(cipher), clock);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < inputs.length) await repository.saveConnected(inputs[next++]);
    };
    await Promise.all(Array.from({ length: REPOSITORY_CONCURRENCY }, worker));
  } finally {
    await dataSource.destroy();
  }
}

/**
 * The row saveConnected leaves behind for a new (account, provider): its placeholder INSERT
 * (version 1, created_at now()) followed by its UPDATE (status active, sealed values bound to the
 * row id, timestamps, version + 1, errors/lease cleared). Checked column by column against
 * BENCH_SEED=repository: identical but for ids, token values and timestamps.
 */
async function insertInBulk(url: string, cipher: TokenCipher, now: Date, inputs: SaveConnectedInput[]): Promise<void> {
  const client = new Client({ connectionString: url, application_name: 'token-broker-bench-seed' });
  await client.connect();
  try {
    // Seeding only: a crash would lose rows we are about to write again anyway.
    await client.query('SET synchronous_commit = off');
    for (let start = 0; start < inputs.length; start += BULK_BATCH_ROWS) {
      const batch = inputs.slice(start, start + BULK_BATCH_ROWS);
      const columns = {
        id: [] as string[],
        account: [] as string[],
        provider: [] as string[],
        access: [] as string[],
        refresh: [] as Array<string | null>,
        tokenType: [] as Array<string | null>,
        scope: [] as Array<string | null>,
        expiresAt: [] as Array<string | null>,
        refreshExpiresAt: [] as Array<string | null>,
        identity: [] as Array<string | null>,
        nextRefreshAt: [] as Array<string | null>,
      };
      for (const input of batch) {
        const id = randomUUID();
        columns.id.push(id);
        columns.account.push(input.account);
        columns.provider.push(input.provider);
        columns.access.push(cipher.seal(input.tokens.accessToken, { connectionId: id, field: 'access_token' }));
        columns.refresh.push(input.tokens.refreshToken ? cipher.seal(input.tokens.refreshToken, { connectionId: id, field: 'refresh_token' }) : null);
        columns.tokenType.push(input.tokens.tokenType ?? null);
        columns.scope.push(input.tokens.scope ?? null);
        columns.expiresAt.push(input.tokens.expiresAt?.toISOString() ?? null);
        columns.refreshExpiresAt.push(input.tokens.refreshTokenExpiresAt?.toISOString() ?? null);
        columns.identity.push(input.identity ? JSON.stringify(input.identity) : null);
        columns.nextRefreshAt.push(input.nextRefreshAt?.toISOString() ?? null);
      }
      await client.query(
        `INSERT INTO connections (id, account, provider, status, access_token_sealed, refresh_token_sealed,
           token_type, scope, expires_at, refresh_token_expires_at, identity, created_at, updated_at, connected_at,
           last_refreshed_at, last_error_code, last_error_message, last_error_at, version, next_refresh_at,
           refresh_failures, lease_owner, lease_expires_at)
         SELECT u.id, u.account, u.provider, 'active', u.access, u.refresh,
           u.token_type, u.scope, u.expires_at, u.refresh_expires_at, u.identity, $12, $12, $12,
           NULL, NULL, NULL, NULL, 2, u.next_refresh_at,
           0, NULL, NULL
         FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::text[], $5::text[], $6::varchar[],
           $7::text[], $8::timestamptz[], $9::timestamptz[], $10::jsonb[], $11::timestamptz[])
           AS u(id, account, provider, access, refresh, token_type, scope, expires_at, refresh_expires_at, identity, next_refresh_at)`,
        [
          columns.id,
          columns.account,
          columns.provider,
          columns.access,
          columns.refresh,
          columns.tokenType,
          columns.scope,
          columns.expiresAt,
          columns.refreshExpiresAt,
          columns.identity,
          columns.nextRefreshAt,
          now.toISOString(),
        ],
      );
    }
  } finally {
    await client.end();
  }
}
