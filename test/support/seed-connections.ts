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
import { KeyRing, SealContexts, TokenCipher } from '@app/crypto';
import { dataSourceOptions } from '@app/database';
import { readTokenResponse } from '@app/providers';
import { issuedTokenSet, RefreshPlanner } from '@app/refresh';
import { randomBytes, randomUUID } from 'node:crypto';
import { Client } from 'pg';
import { DataSource } from 'typeorm';
import type { ProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';

export type SeedMode = 'bulk' | 'repository';

/**
 * What each seeded connection holds, i.e. what a read of it serves: a Copy.ai OAuth token
 * (`oauth`), a Copy.ai API key (`api_key`), or a Copernica OAuth token with a REST v4 JWT already
 * minted (`v4`, read with ?provider=copernica&api=v4). The last two are written in bulk only.
 */
export type SeedKind = 'oauth' | 'api_key' | 'v4';

/** The query a read of a seeded connection of `kind` carries. */
export function seedReadQuery(kind: SeedKind): string {
  return kind === 'v4' ? '?provider=copernica&api=v4' : '';
}

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
  /** Default `oauth`. */
  kind?: SeedKind;
}

/** What a bulk row holds beside its tokens, for the kinds that are not plain OAuth. */
interface SeedExtras {
  apiKey?: string;
  derived?: { token: string; expiresAt: Date; refreshAt: Date | null };
}

export interface SeededConnection {
  account: string;
  /** What a read of the connection answers as accessToken: the access token, the API key, or the v4 JWT. */
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
  const kind = options.kind ?? 'oauth';
  const provider = kind === 'v4' ? 'copernica' : PROVIDER;
  const inputs: SaveConnectedInput[] = [];
  const extras: SeedExtras[] = [];
  const lifetime = options.tokenLifetimeSec;
  const lifetimeSec = (): number => (typeof lifetime === 'number' ? lifetime : lifetime.minSec + Math.floor(Math.random() * (lifetime.maxSec - lifetime.minSec + 1)));
  for (let i = 0; i < options.count; i++) {
    if (kind === 'api_key') {
      const apiKey = `cai_key_${randomBytes(24).toString('base64url')}`;
      inputs.push({ account: benchAccount(i), provider, tokens: { accessToken: apiKey, tokenType: 'api_key', expiresAt: null }, identity: null, nextRefreshAt: null });
      extras.push({ apiKey });
      continue;
    }
    const issued = readTokenResponse(provider, options.sandbox.issueTokens(provider, { expiresInSec: lifetimeSec() }));
    const tokens = issuedTokenSet(issued, now);
    inputs.push({
      account: benchAccount(i),
      provider,
      tokens,
      identity: null,
      nextRefreshAt: planner.nextRefreshAt(tokens.expiresAt, issued.refreshToken !== null, now),
    });
    // A JWT as Copernica's authentication service answers it, valid 24 h (the broker only reads its exp).
    const expiresAt = new Date(now.getTime() + 86_400_000);
    extras.push(kind === 'v4' ? { derived: { token: fakeJwt(expiresAt), expiresAt, refreshAt: planner.nextRefreshAt(expiresAt, true, now) } } : {});
  }

  if (options.mode === 'repository') {
    if (kind !== 'oauth') throw new Error(`seeding ${kind} connections is done in bulk only`);
    await saveThroughRepository(options.url, cipher, clock, inputs);
  } else {
    await insertInBulk(options.url, cipher, now, inputs, extras);
  }
  return inputs.map((input, i) => ({
    account: input.account,
    accessToken: extras[i].derived?.token ?? input.tokens.accessToken,
    refreshToken: input.tokens.refreshToken ?? null,
  }));
}

function fakeJwt(expiresAt: Date): string {
  const part = (value: unknown): string => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub: 'bench', exp: Math.floor(expiresAt.getTime() / 1000) })}.${randomBytes(32).toString('base64url')}`;
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
async function insertInBulk(url: string, cipher: TokenCipher, now: Date, inputs: SaveConnectedInput[], extras: SeedExtras[]): Promise<void> {
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
        access: [] as Array<string | null>,
        refresh: [] as Array<string | null>,
        tokenType: [] as Array<string | null>,
        scope: [] as Array<string | null>,
        expiresAt: [] as Array<string | null>,
        refreshExpiresAt: [] as Array<string | null>,
        identity: [] as Array<string | null>,
        nextRefreshAt: [] as Array<string | null>,
        authMode: [] as string[],
        credential: [] as Array<string | null>,
        derived: [] as Array<string | null>,
        derivedExpiresAt: [] as Array<string | null>,
        derivedRefreshAt: [] as Array<string | null>,
      };
      for (const [offset, input] of batch.entries()) {
        const id = randomUUID();
        const extra = extras[start + offset];
        columns.id.push(id);
        columns.account.push(input.account);
        columns.provider.push(input.provider);
        columns.authMode.push(extra.apiKey ? 'api_key' : 'oauth2');
        columns.credential.push(extra.apiKey ? cipher.seal(extra.apiKey, SealContexts.staticCredential(id)) : null);
        columns.derived.push(extra.derived ? cipher.seal(extra.derived.token, SealContexts.derivedToken(id)) : null);
        columns.derivedExpiresAt.push(extra.derived?.expiresAt.toISOString() ?? null);
        columns.derivedRefreshAt.push(extra.derived?.refreshAt?.toISOString() ?? null);
        columns.access.push(extra.apiKey ? null : cipher.seal(input.tokens.accessToken, { connectionId: id, field: 'access_token' }));
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
           refresh_failures, lease_owner, lease_expires_at,
           auth_mode, credential_sealed, derived_token_sealed, derived_expires_at, derived_refresh_at)
         SELECT u.id, u.account, u.provider, 'active', u.access, u.refresh,
           u.token_type, u.scope, u.expires_at, u.refresh_expires_at, u.identity, $12, $12, $12,
           NULL, NULL, NULL, NULL, 2, u.next_refresh_at,
           0, NULL, NULL,
           u.auth_mode, u.credential, u.derived, u.derived_expires_at, u.derived_refresh_at
         FROM unnest($1::uuid[], $2::varchar[], $3::varchar[], $4::text[], $5::text[], $6::varchar[],
           $7::text[], $8::timestamptz[], $9::timestamptz[], $10::jsonb[], $11::timestamptz[],
           $13::varchar[], $14::text[], $15::text[], $16::timestamptz[], $17::timestamptz[])
           AS u(id, account, provider, access, refresh, token_type, scope, expires_at, refresh_expires_at, identity, next_refresh_at,
             auth_mode, credential, derived, derived_expires_at, derived_refresh_at)`,
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
          columns.authMode,
          columns.credential,
          columns.derived,
          columns.derivedExpiresAt,
          columns.derivedRefreshAt,
        ],
      );
    }
  } finally {
    await client.end();
  }
}
