import { Clock } from '@app/common';
import { KeyRing, SealContexts, sealedKeyId, TokenCipher } from '@app/crypto';
import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DataSource } from 'typeorm';
import { StoredTokens } from '../../../test/support/stored-tokens';
import { openTestDataSource, truncateAll } from '../../../test/support/test-database';
import { ConnectionUnreadableError } from './connection.errors';
import { ConnectionSealer } from './connection.sealer';
import { KeyRotationRepository, ResealProgress } from './key-rotation.repository';
import { KeyRotationIncompleteError, KeyRotationProgress, rotateKeys } from './key-rotation';
import { PostgresConnectionRefreshRepository } from './postgres-connection-refresh.repository';
import { PostgresConnectionRepository } from './postgres-connection.repository';

const keyOld = `old:${randomBytes(32).toString('base64')}`;
const keyNew = `new:${randomBytes(32).toString('base64')}`;
const keyGone = `gone:${randomBytes(32).toString('base64')}`;

interface Tokens {
  access: string;
  refresh: string;
}

interface StoredRow {
  id: string;
  access_key_id: string;
  refresh_key_id: string;
  access_token_sealed: string;
  refresh_token_sealed: string;
}

/**
 * Inserts active connections sealed under `ring`, in one statement. Mirrors what
 * saveConnected stores (values bound to the row id and column,
 * version 2 after its insert-then-update), only without 10,000 round trips.
 */
async function seedConnections(dataSource: DataSource, ring: string, count: number, prefix = 'acct'): Promise<Map<string, Tokens>> {
  const cipher = new TokenCipher(KeyRing.parse(ring));
  const ids: string[] = [];
  const accounts: string[] = [];
  const accessSealed: string[] = [];
  const refreshSealed: string[] = [];
  const tokens = new Map<string, Tokens>();
  for (let i = 0; i < count; i++) {
    const id = randomUUID();
    const plain = { access: `at-seed-${i}-${randomBytes(8).toString('hex')}`, refresh: `rt-seed-${i}-${randomBytes(8).toString('hex')}` };
    const access = cipher.seal(plain.access, { connectionId: id, field: 'access_token' });
    ids.push(id);
    accounts.push(`${prefix}-${i}`);
    accessSealed.push(access);
    refreshSealed.push(cipher.seal(plain.refresh, { connectionId: id, field: 'refresh_token' }));
    tokens.set(id, plain);
  }
  await dataSource.query(
    `INSERT INTO connections (id, account, provider, status, access_token_sealed, refresh_token_sealed,
       token_type, scope, expires_at, updated_at, connected_at, version, next_refresh_at, refresh_failures)
     SELECT u.id, u.account, 'copyai', 'active', u.access, u.refresh, 'Bearer', 'read',
       now() + interval '1 hour', now(), now(), 2, now() + interval '50 minutes', 0
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(id, account, access, refresh)`,
    [ids, accounts, accessSealed, refreshSealed],
  );
  return tokens;
}

/** A replica's view of the connections under `ring`: its repositories and sealer. */
interface Replica {
  connections: PostgresConnectionRepository;
  refreshes: PostgresConnectionRefreshRepository;
  stored: StoredTokens;
}

function replicaFor(dataSource: DataSource, ring: string): Replica {
  const sealer = new ConnectionSealer(new TokenCipher(KeyRing.parse(ring)));
  const connections = new PostgresConnectionRepository(dataSource, sealer, new Clock());
  return { connections, refreshes: new PostgresConnectionRefreshRepository(dataSource, sealer, new Clock()), stored: new StoredTokens(connections, sealer) };
}

function rotationFor(dataSource: DataSource, ring: string): KeyRotationRepository {
  return new KeyRotationRepository(dataSource, new TokenCipher(KeyRing.parse(ring)));
}

/** Counts resealBatch calls, to show that retries pause instead of spinning. */
class CountingRepository extends KeyRotationRepository {
  calls = 0;

  override async resealBatch(limit: number): Promise<ResealProgress> {
    this.calls++;
    return super.resealBatch(limit);
  }
}

describe('rotateKeys (real Postgres)', () => {
  let dataSource: DataSource;

  beforeAll(async () => {
    dataSource = await openTestDataSource();
  });

  afterAll(async () => {
    await dataSource.destroy();
  });

  beforeEach(async () => {
    await truncateAll(dataSource);
  });

  it('re-seals 10,000 rows under the new key while fenced refreshes keep landing, losing none', async () => {
    const seeded = await seedConnections(dataSource, keyOld, 10_000);
    const rotated = replicaFor(dataSource, `${keyNew},${keyOld}`);
    const rotation = rotationFor(dataSource, `${keyNew},${keyOld}`);
    // Sealed values, not rows: an access and a refresh token each.
    expect(await rotation.countByKeyId()).toEqual({ old: 20_000 });

    // Writers: three replicas already on the new ring, and one not restarted yet (ring `old`
    // only) that keeps sealing under the old key until a third of the way through.
    const straggler = replicaFor(dataSource, keyOld);
    const pool = [...seeded.keys()].sort(() => Math.random() - 0.5).slice(0, 300);
    const lastWrite = new Map<string, Tokens & { version: number }>();
    let rotating = true;
    let stopStraggler = false;
    let writesDuringRotation = 0;
    let fencedOut = 0;
    const writer = async (replica: Replica, label: string, stop: () => boolean): Promise<number> => {
      let n = 0;
      while (!stop()) {
        const id = pool[randomInt(pool.length)];
        const current = (await replica.connections.findSealedById(id))?.record;
        if (!current) throw new Error(`seeded row ${id} vanished`);
        const tokens = { access: `at-${label}-${n}-${id}`, refresh: `rt-${label}-${n}-${id}` };
        n++;
        const saved = await replica.refreshes.saveRefreshed({
          id,
          expectedVersion: current.version,
          tokens: { accessToken: tokens.access, refreshToken: tokens.refresh, expiresAt: new Date(Date.now() + 3_600_000) },
          nextRefreshAt: null,
        });
        if (!saved) {
          fencedOut++; // another writer moved the version on first; this write must leave no trace
          continue;
        }
        if (rotating) writesDuringRotation++;
        const previous = lastWrite.get(id);
        const version = saved.record.version;
        if (!previous || version > previous.version) lastWrite.set(id, { ...tokens, version });
        await sleep(5); // a busy refresher, not a CPU hog competing with the rotation for this machine's 2 cores
      }
      return n;
    };
    const writers = [
      writer(rotated, 'w1', () => !rotating),
      writer(rotated, 'w2', () => !rotating),
      writer(rotated, 'w3', () => !rotating),
      writer(straggler, 'old', () => stopStraggler || !rotating),
    ];

    const progress: KeyRotationProgress[] = [];
    const result = await rotateKeys(rotation, {
      batchSize: 500,
      pauseMs: 20,
      activeKeyId: 'new',
      onProgress: (p) => {
        progress.push(p);
        if (p.resealed >= 3_000) stopStraggler = true;
      },
    }).finally(async () => {
      rotating = false;
      await Promise.all(writers);
    });
    console.log(
      `rotateKeys: ${result.resealed} rows re-sealed in ${result.elapsedMs} ms = ${result.rowsPerSecond} rows/s, ` +
        `with ${writesDuringRotation} concurrent refresh writes landing (${fencedOut} fenced out) on ${lastWrite.size} rows`,
    );

    expect(writesDuringRotation).toBeGreaterThan(0);
    expect(result.remainingByKey).toEqual({ new: 20_000 });
    expect(await rotation.countByKeyId()).toEqual({ new: 20_000 });
    // Rows the new-ring writers reached first needed no re-seal; straggler writes needed another.
    expect(result.resealed).toBeGreaterThanOrEqual(10_000 - lastWrite.size);
    expect(result.resealed).toBeLessThanOrEqual(10_000 + writesDuringRotation);
    expect(result.rowsPerSecond).toBeGreaterThan(0);
    expect(progress[progress.length - 1]).toMatchObject({ resealed: result.resealed, remaining: 0 });
    expect(progress.map((p) => p.resealed)).toEqual([...progress.map((p) => p.resealed)].sort((a, b) => a - b));

    // Every row opens with a ring holding only the new key, and holds what its last successful
    // writer wrote (no lost update), or else exactly what it was seeded with.
    const onlyNew = new TokenCipher(KeyRing.parse(keyNew));
    const rows: StoredRow[] = await dataSource.query(
      `SELECT id, access_key_id, refresh_key_id, access_token_sealed, refresh_token_sealed FROM connections`,
    );
    expect(rows).toHaveLength(10_000);
    let checked = 0;
    for (const row of rows) {
      const expected = lastWrite.get(row.id) ?? seeded.get(row.id);
      expect([row.access_key_id, row.refresh_key_id]).toEqual(['new', 'new']);
      expect(sealedKeyId(row.access_token_sealed)).toBe('new');
      expect(sealedKeyId(row.refresh_token_sealed)).toBe('new');
      const access = onlyNew.open(row.access_token_sealed, { connectionId: row.id, field: 'access_token' });
      const refresh = onlyNew.open(row.refresh_token_sealed, { connectionId: row.id, field: 'refresh_token' });
      if (access !== expected?.access || refresh !== expected.refresh) {
        throw new Error(`row ${row.id} holds ${access}/${refresh}, expected ${expected?.access}/${expected?.refresh}`);
      }
      checked++;
    }
    expect(checked).toBe(10_000);
    for (const [id, written] of lastWrite) {
      const record = (await rotated.connections.findSealedById(id))?.record;
      expect(record?.version).toBe(written.version); // re-sealing never bumped a version
    }

    // Idempotent: nothing is left to do.
    const again = await rotateKeys(rotation, { batchSize: 500 });
    expect(again.resealed).toBe(0);
    expect(again.remainingByKey).toEqual({ new: 20_000 });
  });

  it('stops on a row sealed under a key the ring lacks, naming the connection and key id but no token', async () => {
    await seedConnections(dataSource, keyOld, 20, 'fine');
    const lost = await seedConnections(dataSource, keyGone, 1, 'lost');
    const [[lostId, lostTokens]] = [...lost];
    const repository = rotationFor(dataSource, `${keyNew},${keyOld}`);

    const failure = await rotateKeys(repository, { batchSize: 500, pauseMs: 0 }).then(
      () => undefined,
      (error: unknown) => error,
    );

    expect(failure).toBeInstanceOf(ConnectionUnreadableError);
    const error = failure as ConnectionUnreadableError;
    expect(error.connectionId).toBe(lostId);
    expect(error.keyId).toBe('gone');
    expect(error.message).toContain(lostId);
    expect(error.message).toContain('"gone"');
    for (const secret of [lostTokens.access, lostTokens.refresh, keyGone.slice(5), keyNew.slice(4), keyOld.slice(4)]) {
      expect(error.message).not.toContain(secret);
      expect(JSON.stringify(error)).not.toContain(secret);
    }
    // The batch holding the bad row rolled back as a whole; nothing was half-written.
    expect(await repository.countByKeyId()).toEqual({ gone: 2, old: 40 });
  });

  it('waits for a row a writer holds, and gives up after maxPasses without spinning', async () => {
    const seeded = await seedConnections(dataSource, keyOld, 30);
    const held = [...seeded.keys()][0];
    const repository = new CountingRepository(dataSource, new TokenCipher(KeyRing.parse(`${keyNew},${keyOld}`)));

    const runner = dataSource.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    try {
      await runner.query(`SELECT id FROM connections WHERE id = $1 FOR UPDATE`, [held]);
      const started = Date.now();
      const failure = await rotateKeys(repository, { batchSize: 10, pauseMs: 50, maxPasses: 4 }).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(failure).toBeInstanceOf(KeyRotationIncompleteError);
      expect((failure as KeyRotationIncompleteError).resealed).toBe(29);
      expect((failure as KeyRotationIncompleteError).remainingByKey).toEqual({ new: 58, old: 2 }); // sealed values: two a row
      expect(Date.now() - started).toBeGreaterThanOrEqual(3 * 50);
      // 3 full batches + 1 short one in the first pass, then one call per retry pass.
      expect(repository.calls).toBeLessThanOrEqual(4 + 3 + 1);
    } finally {
      await runner.rollbackTransaction();
      await runner.release();
    }

    // Once the writer lets go, the row is taken on the next run.
    const result = await rotateKeys(repository, { batchSize: 10 });
    expect(result.resealed).toBe(1);
    expect(result.remainingByKey).toEqual({ new: 60 });
  });

  it('picks up a row the moment its lock is released mid-run', async () => {
    const seeded = await seedConnections(dataSource, keyOld, 5);
    const held = [...seeded.keys()][2];
    const repository = rotationFor(dataSource, `${keyNew},${keyOld}`);
    const runner = dataSource.createQueryRunner();
    await runner.connect();
    await runner.startTransaction();
    await runner.query(`SELECT id FROM connections WHERE id = $1 FOR UPDATE`, [held]);
    const released = sleep(150).then(async () => {
      await runner.rollbackTransaction();
      await runner.release();
    });
    const [result] = await Promise.all([rotateKeys(repository, { batchSize: 500, pauseMs: 25 }), released]);
    expect(result.resealed).toBe(5);
    expect(result.remainingByKey).toEqual({ new: 10 });
  });

  it('re-seals a kept refresh token whose row was last written under the new key (a refresh without a new refresh token)', async () => {
    const before = replicaFor(dataSource, keyOld);
    const connected = await before.connections.saveConnected({
      account: 'acme',
      provider: 'copyai',
      tokens: { accessToken: 'at-0', refreshToken: 'rt-kept', expiresAt: new Date(Date.now() + 60_000) },
      identity: null,
      nextRefreshAt: null,
    });
    // The replica already runs with the new key first; the provider answers without a new refresh token.
    const after = replicaFor(dataSource, `${keyNew},${keyOld}`);
    await after.refreshes.saveRefreshed({ id: connected.id, expectedVersion: connected.version, tokens: { accessToken: 'at-1', refreshToken: null, expiresAt: null }, nextRefreshAt: null });
    const rotation = rotationFor(dataSource, `${keyNew},${keyOld}`);
    expect(await rotation.countByKeyId()).toEqual({ new: 1, old: 1 });

    const result = await rotateKeys(rotation, { batchSize: 10 });

    expect(result.resealed).toBe(1);
    expect(result.remainingByKey).toEqual({ new: 2 });
    // With the old key dropped, both tokens still open.
    expect(await replicaFor(dataSource, keyNew).stored.find('acme', 'copyai')).toMatchObject({ accessToken: 'at-1', refreshToken: 'rt-kept' });
  });

  it('re-seals the PKCE verifiers of pending authorizations', async () => {
    const oldCipher = new TokenCipher(KeyRing.parse(keyOld));
    const [{ id: sessionId }] = await dataSource.query<Array<{ id: string }>>(
      `INSERT INTO connect_sessions (token_hash, account, provider, created_by, expires_at)
       VALUES ($1, 'acme', 'copyai', 'tests', now() + interval '30 minutes') RETURNING id`,
      [randomBytes(32)],
    );
    const stateHash = randomBytes(32);
    const verifier = `verifier-${randomBytes(16).toString('hex')}`;
    await dataSource.query(
      `INSERT INTO oauth_states (state_hash, provider, session_id, browser_hash, code_verifier_sealed, redirect_uri, expires_at)
       VALUES ($1, 'copyai', $2, $3, $4, 'http://127.0.0.1/cb', now() + interval '10 minutes')`,
      [stateHash, sessionId, randomBytes(32), oldCipher.seal(verifier, SealContexts.codeVerifier(stateHash.toString('hex')))],
    );
    const rotation = rotationFor(dataSource, `${keyNew},${keyOld}`);
    expect(await rotation.keyIdsInUse()).toEqual(['old']);

    const result = await rotateKeys(rotation, { batchSize: 10 });

    expect(result.remainingByKey).toEqual({ new: 1 });
    expect(await rotation.keyIdsInUse()).toEqual(['new']);
    const [{ sealed }] = await dataSource.query<Array<{ sealed: string }>>(`SELECT code_verifier_sealed AS sealed FROM oauth_states`);
    expect(new TokenCipher(KeyRing.parse(keyNew)).open(sealed, SealContexts.codeVerifier(stateHash.toString('hex')))).toBe(verifier);
  });

  it('re-seals a static credential (API key) under its own context, and readiness sees its key id', async () => {
    const old = replicaFor(dataSource, keyOld);
    const stored = await old.connections.saveStaticCredential({
      account: 'acme',
      provider: 'copyai',
      credential: { apiKey: 'cai_key_rotated', userEmail: null },
      expiresAt: null,
      identity: null,
      replacing: null,
    });
    expect(stored).toMatchObject({ authMode: 'api_key', hasRefreshToken: false });
    const rotation = rotationFor(dataSource, `${keyNew},${keyOld}`);
    expect(await rotation.keyIdsInUse()).toEqual(['old']);
    expect(await rotation.countByKeyId()).toEqual({ old: 1 });

    const result = await rotateKeys(rotation, { batchSize: 10 });

    expect(result).toMatchObject({ resealed: 1, remainingByKey: { new: 1 } });
    expect(await rotation.keyIdsInUse()).toEqual(['new']);
    const [row] = await dataSource.query<Array<{ credential_key_id: string; version: number }>>(`SELECT credential_key_id, version FROM connections`);
    expect(row).toEqual({ credential_key_id: 'new', version: stored!.version });
    expect(await replicaFor(dataSource, keyNew).stored.find('acme', 'copyai')).toMatchObject({ authMode: 'api_key', accessToken: 'cai_key_rotated', refreshToken: null });
  });

  it('re-seals a derived token (Copernica REST v4 JWT) under its own context, and readiness sees its key id', async () => {
    const old = replicaFor(dataSource, keyOld);
    await seedConnections(dataSource, keyOld, 1);
    await dataSource.query(`UPDATE connections SET access_token_sealed = NULL, refresh_token_sealed = NULL`);
    const [{ id, version }] = await dataSource.query<Array<{ id: string; version: number }>>(`SELECT id, version FROM connections`);
    await old.refreshes.claimRefreshLease(id, 'tests', new Date(), 30_000);
    const expiresAt = new Date(Date.now() + 86_400_000);
    expect(await old.refreshes.saveDerived({ id, expectedVersion: version, token: 'jwt-rotated', expiresAt, refreshAt: new Date(Date.now() + 3_600_000) })).not.toBeNull();
    const rotation = rotationFor(dataSource, `${keyNew},${keyOld}`);
    expect(await rotation.keyIdsInUse()).toEqual(['old']);

    expect(await rotateKeys(rotation, { batchSize: 10 })).toMatchObject({ resealed: 1, remainingByKey: { new: 1 } });

    expect(await rotation.keyIdsInUse()).toEqual(['new']);
    const [row] = await dataSource.query<Array<{ derived_key_id: string; derived_token_sealed: string }>>(`SELECT derived_key_id, derived_token_sealed FROM connections`);
    expect(row.derived_key_id).toBe('new');
    expect(new ConnectionSealer(new TokenCipher(KeyRing.parse(keyNew))).openDerivedToken(id, row.derived_token_sealed)).toBe('jwt-rotated');
  });

  it('lists the key ids in use over every sealed column', async () => {
    await seedConnections(dataSource, keyOld, 3, 'old');
    await seedConnections(dataSource, keyGone, 2, 'gone');
    const rotation = rotationFor(dataSource, keyNew);
    expect(await rotation.keyIdsInUse()).toEqual(['gone', 'old']);
    await dataSource.query(`UPDATE connections SET access_token_sealed = NULL, refresh_token_sealed = NULL WHERE account LIKE 'gone-%'`);
    expect(await rotation.keyIdsInUse()).toEqual(['old']);
  });

  it('rejects nonsensical options before touching the database', async () => {
    const repository = rotationFor(dataSource, keyNew);
    await expect(rotateKeys(repository, { batchSize: 0 })).rejects.toThrow(RangeError);
    await expect(rotateKeys(repository, { pauseMs: -1 })).rejects.toThrow(RangeError);
    await expect(rotateKeys(repository, { maxPasses: 1.5 })).rejects.toThrow(RangeError);
  });
});
