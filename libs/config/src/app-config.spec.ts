/**
 * AppConfig holds every secret of the process; printing it by accident (console.log, util.inspect,
 * a logger given the object, a spread into another object) must show none of them.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format, inspect } from 'node:util';
import { loadConfig } from './load-config';

describe('AppConfig', () => {
  let dataDir: string;
  beforeEach(() => (dataDir = mkdtempSync(join(tmpdir(), 'tb-app-config-'))));
  afterEach(() => rmSync(dataDir, { recursive: true, force: true }));

  it('shows no secret under util.inspect, console.log formatting, JSON or a spread', () => {
    const secret = (): string => randomBytes(24).toString('base64url');
    const keyRingKey = randomBytes(32).toString('base64');
    const serviceSecret = secret();
    const adminSecret = secret();
    const copperSecret = secret();
    const databasePassword = `pw${randomBytes(8).toString('hex')}`;
    const { config } = loadConfig({
      DATA_DIR: dataDir,
      DATABASE_URL: `postgres://broker:${databasePassword}@db.internal/broker`,
      TOKEN_ENCRYPTION_KEYS: `k1:${keyRingKey}`,
      SERVICE_API_KEYS: `billing:${serviceSecret}`,
      ADMIN_API_KEYS: `ops:${adminSecret}`,
      COPPER_CLIENT_ID: 'copper-client',
      COPPER_CLIENT_SECRET: copperSecret,
    });

    const printed = [
      inspect(config),
      inspect(config, { depth: Infinity, showHidden: true }),
      inspect({ wrapped: { config } }, { depth: Infinity }),
      format('%o', config),
      format('%O', config),
      format('%j', config),
      JSON.stringify(config),
      inspect({ ...config }, { depth: Infinity }),
      JSON.stringify(Object.entries(config)),
    ];
    for (const text of printed) {
      for (const value of [keyRingKey, serviceSecret, adminSecret, copperSecret, databasePassword]) expect(text).not.toContain(value);
    }
    // What it does show: the harmless view.
    expect(inspect(config)).toContain('copper');
    expect(inspect(config)).toContain('billing');

    // The values are still there for the code that needs them.
    expect(config.providers.copper?.clientSecret).toBe(copperSecret);
    expect(config.serviceApiKeys[0].secret).toBe(serviceSecret);
    expect(config.tokenEncryptionKeys).toBe(`k1:${keyRingKey}`);
    expect(config.databaseUrl).toContain(databasePassword);
  });
});
