/**
 * Secrets from mounted files, as the Kubernetes manifests give them (deploy/k8s): a production
 * broker process whose every secret comes from a `<NAME>_FILE` serves (the database, the key
 * ring, both kinds of API key and a provider's client secret all in use), and one given a secret
 * both ways refuses to start, naming the variable and never its value.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { BrokerProcess, spawnBrokerProcess, startBrokerProcess } from '../support/broker-process';
import { connectAccount } from '../support/connect-dance';
import { brokerEndpoint, TEST_ADMIN_KEY, TEST_ENCRYPTION_KEYS, TEST_SERVICE_KEY } from '../support/test-broker';
import { openTestDataSource, testDatabaseUrl, truncateAll } from '../support/test-database';

/** Every secret the broker process would otherwise get from startBrokerProcess's environment, left out. */
const NO_SECRET_VARIABLES = { DATABASE_URL: undefined, TOKEN_ENCRYPTION_KEYS: undefined, SERVICE_API_KEYS: undefined, ADMIN_API_KEYS: undefined };

describe('secrets from <NAME>_FILE', () => {
  let sandbox: ProviderSandbox;
  let db: DataSource;
  let dir: string;
  let broker: BrokerProcess | undefined;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    db = await openTestDataSource();
  });
  beforeEach(async () => {
    await truncateAll(db);
    dir = mkdtempSync(join(tmpdir(), 'tb-secret-files-e2e-'));
  });
  afterEach(async () => {
    await broker?.kill();
    broker = undefined;
    rmSync(dir, { recursive: true, force: true });
  });
  afterAll(async () => {
    await sandbox?.close();
    await db?.destroy();
  });

  /** A file as a Secret volume holds it: the value and a trailing newline, readable by its owner only. */
  const secretFile = (name: string, value: string): string => {
    const path = join(dir, name);
    writeFileSync(path, `${value}\n`, { mode: 0o600 });
    return path;
  };

  /** A production environment with the sandbox's providers, every secret given as a file. */
  const productionFromFiles = (): Record<string, string | undefined> => {
    const { COPYAI_CLIENT_SECRET, COPPER_CLIENT_SECRET, COPERNICA_CLIENT_SECRET, ...providers } = sandbox.env();
    return {
      ...providers,
      ...NO_SECRET_VARIABLES,
      NODE_ENV: 'production',
      CONNECT_RETURN_ORIGINS: 'http://localhost:*',
      SERVICE_GRANTS: '*=*/*',
      DATABASE_URL_FILE: secretFile('database-url', testDatabaseUrl()),
      TOKEN_ENCRYPTION_KEYS_FILE: secretFile('token-encryption-keys', TEST_ENCRYPTION_KEYS),
      SERVICE_API_KEYS_FILE: secretFile('service-api-keys', `tests:${TEST_SERVICE_KEY}`),
      ADMIN_API_KEYS_FILE: secretFile('admin-api-keys', `ops:${TEST_ADMIN_KEY}`),
      COPYAI_CLIENT_SECRET_FILE: secretFile('copyai-client-secret', COPYAI_CLIENT_SECRET),
      COPPER_CLIENT_SECRET_FILE: secretFile('copper-client-secret', COPPER_CLIENT_SECRET),
      COPERNICA_CLIENT_SECRET_FILE: secretFile('copernica-client-secret', COPERNICA_CLIENT_SECRET),
    };
  };

  it('serves in production with every secret read from a file', async () => {
    broker = await startBrokerProcess(productionFromFiles());
    const api = brokerEndpoint(broker.url);

    // The client secret from its file is what the sandbox's token endpoint accepts.
    await connectAccount(api, 'acme-files', 'copyai');
    const token = await api.call('/tokens/acme-files?provider=copyai', { as: 'service' });
    expect(token.status).toBe(200);
    expect(((await token.json()) as { accessToken: string }).accessToken).toEqual(expect.any(String));
    const admin = await api.call('/admin/connections', { as: 'admin' });
    expect(admin.status).toBe(200);
    expect(((await admin.json()) as { items: Array<{ account: string }> }).items.map((c) => c.account)).toEqual(['acme-files']);
    // Without a key the file's keys are still required.
    expect((await api.call('/tokens/acme-files?provider=copyai')).status).toBe(401);
    expect(broker.output()).not.toContain('_FILE:');
  });

  it('refuses to start when a secret is given both ways, naming it and never its value', async () => {
    const direct = `ops:${'d'.repeat(32)}`;
    broker = await spawnBrokerProcess({ ...productionFromFiles(), ADMIN_API_KEYS: direct });
    await broker.exit;

    expect(broker.exitCode()).toBe(78);
    expect(broker.output()).toContain('ADMIN_API_KEYS and ADMIN_API_KEYS_FILE: both are set; give the value one way only');
    expect(broker.output()).not.toContain(direct.slice(4));
    expect(broker.output()).not.toContain(TEST_ADMIN_KEY);
  });
});
