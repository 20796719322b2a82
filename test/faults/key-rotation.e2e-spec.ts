/**
 * Guarantee 11: key rotation keeps every secret whole, and readiness tells when the ring cannot
 * open what the database holds. The case that broke it: a provider that does not rotate
 * refresh tokens (the refresh answer carries none), so after one refresh under the new key the
 * row holds an access token under the new key and a refresh token under the old one.
 */
import { KeyRotationRepository, rotateKeys } from '@app/connections';
import { KeyRing, TokenCipher } from '@app/crypto';
import { randomBytes } from 'node:crypto';
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { connectAccount } from '../support/connect-dance';
import { captureLogs, startTestBroker, TestBroker } from '../support/test-broker';
import { openTestDataSource, truncateAll } from '../support/test-database';

const OLD = `old:${randomBytes(32).toString('base64')}`;
const NEW = `new:${randomBytes(32).toString('base64')}`;

describe('key rotation with a provider that does not rotate refresh tokens', () => {
  let sandbox: ProviderSandbox;
  let db: DataSource;
  const running: TestBroker[] = [];

  const start = async (ring: string, logger?: ReturnType<typeof captureLogs>): Promise<TestBroker> => {
    const broker = await startTestBroker(
      { ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false', TOKEN_ENCRYPTION_KEYS: ring, ...(logger ? { LOG_LEVEL: 'info' } : {}) },
      logger ? { logger: logger.logger } : {},
    );
    running.push(broker);
    return broker;
  };
  const stop = async (broker: TestBroker): Promise<void> => {
    running.splice(running.indexOf(broker), 1);
    await broker.close();
  };
  const refresh = (broker: TestBroker): Promise<Response> =>
    broker.call('/admin/connections/acme-rot/refresh?provider=copyai', { method: 'POST', as: 'admin' });
  const keyIds = async (): Promise<{ access_key_id: string; refresh_key_id: string; lease_owner: string | null }> =>
    (await db.query(`SELECT access_key_id, refresh_key_id, lease_owner FROM connections WHERE account = 'acme-rot'`))[0];

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    db = await openTestDataSource();
    await truncateAll(db);
  });

  afterAll(async () => {
    for (const broker of running) await broker.close();
    await sandbox?.close();
    await db?.destroy();
  });

  it('re-seals the kept refresh token, and is not ready while a key it needs is missing', async () => {
    sandbox.configure('copyai', { rotateRefreshTokens: false });
    const before = await start(OLD);
    await connectAccount(before, 'acme-rot', 'copyai');
    await stop(before);

    // Every replica now seals under the new key; a refresh stores only a new access token.
    const during = await start(`${NEW},${OLD}`);
    expect((await refresh(during)).status).toBe(200);
    expect(await keyIds()).toMatchObject({ access_key_id: 'new', refresh_key_id: 'old' });
    await stop(during);

    // Dropping the old key too early: not ready, the log names the missing key, and a refresh
    // says the token cannot be opened without keeping the lease.
    const logs = captureLogs();
    const tooEarly = await start(NEW, logs);
    const ready = await tooEarly.call('/health/ready');
    expect(ready.status).toBe(503);
    const readyBody = await ready.text();
    expect(readyBody).toContain('keyRing');
    expect(readyBody).not.toContain('"old"');
    const messages = logs.lines.map((line) => String((JSON.parse(line) as { msg?: unknown }).msg));
    expect(messages.some((msg) => msg.includes('key id(s) "old"') && msg.includes('TOKEN_ENCRYPTION_KEYS lacks'))).toBe(true);
    const refused = await refresh(tooEarly);
    expect(refused.status).toBe(500);
    expect(((await refused.json()) as { error: string }).error).toBe('token_unreadable');
    expect((await keyIds()).lease_owner).toBeNull();
    await stop(tooEarly);

    // The rotation re-seals what the row's newest write did not touch.
    const result = await rotateKeys(new KeyRotationRepository(db, new TokenCipher(KeyRing.parse(`${NEW},${OLD}`))));
    expect(result.resealed).toBe(1);
    expect(result.remainingByKey).toEqual({ new: 2 });
    expect(await keyIds()).toMatchObject({ access_key_id: 'new', refresh_key_id: 'new' });

    const after = await start(NEW);
    expect((await after.call('/health/ready')).status).toBe(200);
    const refreshed = await refresh(after);
    expect(refreshed.status).toBe(200);
    expect(((await refreshed.json()) as { outcome: string }).outcome).toBe('refreshed');
    expect(sandbox.stats().invalidGrants).toBe(0);
  });
});
