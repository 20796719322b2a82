/**
 * `<NAME>_FILE`: a secret read from a mounted file, as a Kubernetes Secret volume provides it.
 * What an operator sees: the value used as if it had been set directly, both forms refused,
 * unreadable or empty files named, loose permissions warned about, and never a value quoted.
 */
import { providerDefinition } from '@app/providers';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './load-config';
import { readSecretFiles, SECRET_VARIABLES } from './secret-files';

const key = (): string => randomBytes(32).toString('base64');
const apiSecret = (): string => randomBytes(24).toString('base64url');

describe('<NAME>_FILE secrets', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'tb-secret-files-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  /** Writes a secret file with the given mode (0600 unless told). */
  const secretFile = (name: string, content: string, mode = 0o600): string => {
    const path = join(dir, name);
    writeFileSync(path, content, { mode });
    chmodSync(path, mode);
    return path;
  };

  const productionEnv = (secrets: Record<string, string>): NodeJS.ProcessEnv => ({
    NODE_ENV: 'production',
    PUBLIC_URL: 'https://broker.example.com',
    CONNECT_RETURN_ORIGINS: 'https://app.example.com',
    SERVICE_GRANTS: '*=*/*',
    DATA_DIR: join(dir, 'data'),
    ...secrets,
  });

  const refusal = (env: NodeJS.ProcessEnv): ConfigError => {
    try {
      loadConfig(env);
    } catch (error) {
      if (error instanceof ConfigError) return error;
      throw error;
    }
    throw new Error('expected loadConfig to refuse this environment');
  };

  it('covers every secret variable DESIGN lists, each provider client secret included', () => {
    expect(SECRET_VARIABLES).toEqual(
      expect.arrayContaining([
        'DATABASE_URL',
        'TOKEN_ENCRYPTION_KEYS',
        'SERVICE_API_KEYS',
        'ADMIN_API_KEYS',
        'WEBHOOK_SECRET',
        `${providerDefinition('copper').envPrefix}_CLIENT_SECRET`,
        `${providerDefinition('copernica').envPrefix}_CLIENT_SECRET`,
        `${providerDefinition('copyai').envPrefix}_CLIENT_SECRET`,
      ]),
    );
  });

  it('starts a production broker from files alone, each value without its trailing newline', () => {
    const keyRing = `k1:${key()}`;
    const service = apiSecret();
    const admin = apiSecret();
    const clientSecret = apiSecret();
    const prefix = providerDefinition('copper').envPrefix;
    const { config, notices } = loadConfig(
      productionEnv({
        DATABASE_URL_FILE: secretFile('database-url', 'postgres://broker:pa55@db.internal:5432/broker\n'),
        TOKEN_ENCRYPTION_KEYS_FILE: secretFile('keys', `${keyRing}\n`),
        SERVICE_API_KEYS_FILE: secretFile('service', `billing:${service}\r\n`),
        ADMIN_API_KEYS_FILE: secretFile('admin', `ops:${admin}`, 0o400),
        [`${prefix}_CLIENT_ID`]: 'copper-client',
        [`${prefix}_CLIENT_SECRET_FILE`]: secretFile('copper', `${clientSecret}\n\n`),
      }),
    );

    expect(config.databaseUrl).toBe('postgres://broker:pa55@db.internal:5432/broker');
    expect(config.tokenEncryptionKeys).toBe(keyRing);
    expect(config.serviceApiKeys).toEqual([{ name: 'billing', secret: service }]);
    expect(config.adminApiKeys).toEqual([{ name: 'ops', secret: admin }]);
    expect(config.providers.copper?.clientSecret).toBe(clientSecret);
    expect(notices.filter((n) => n.includes('_FILE'))).toEqual([]);
  });

  it('refuses a variable given both ways, naming both and quoting neither value', () => {
    const direct = `ops:${apiSecret()}`;
    const fromFile = `ops:${apiSecret()}`;
    const error = refusal(
      productionEnv({
        DATABASE_URL: 'postgres://broker:pa55@db.internal:5432/broker',
        TOKEN_ENCRYPTION_KEYS: `k1:${key()}`,
        SERVICE_API_KEYS: `billing:${apiSecret()}`,
        ADMIN_API_KEYS: direct,
        ADMIN_API_KEYS_FILE: secretFile('admin', fromFile),
      }),
    );

    expect(error.problems).toEqual(['ADMIN_API_KEYS and ADMIN_API_KEYS_FILE: both are set; give the value one way only']);
    expect(error.message).not.toContain(direct.split(':')[1]);
    expect(error.message).not.toContain(fromFile.split(':')[1]);
  });

  it('lists a missing, empty, directory or oversized file among every other problem', () => {
    const error = refusal(
      productionEnv({
        DATABASE_URL_FILE: join(dir, 'absent'),
        TOKEN_ENCRYPTION_KEYS_FILE: secretFile('empty', '\n'),
        SERVICE_API_KEYS_FILE: dir,
        ADMIN_API_KEYS_FILE: secretFile('huge', 'x'.repeat(100 * 1024)),
      }),
    );

    expect(error.problems).toEqual(
      expect.arrayContaining([
        `DATABASE_URL_FILE: cannot read ${join(dir, 'absent')} (ENOENT)`,
        `TOKEN_ENCRYPTION_KEYS_FILE: ${join(dir, 'empty')} is empty`,
        `SERVICE_API_KEYS_FILE: ${dir} is not a regular file`,
        `ADMIN_API_KEYS_FILE: ${join(dir, 'huge')} is larger than 64 KB; expected the secret alone`,
      ]),
    );
  });

  it('checks what a file holds like the variable it stands for', () => {
    const error = refusal(
      productionEnv({
        DATABASE_URL: 'postgres://broker:pa55@db.internal:5432/broker',
        TOKEN_ENCRYPTION_KEYS_FILE: secretFile('keys', 'k1:too-short\n'),
        SERVICE_API_KEYS: `billing:${apiSecret()}`,
        ADMIN_API_KEYS: `ops:${apiSecret()}`,
      }),
    );

    expect(error.problems.length).toBeGreaterThan(0);
    expect(error.problems.every((p) => p.startsWith('TOKEN_ENCRYPTION_KEYS'))).toBe(true);
  });

  it('warns about a file every user may read, and one its group may read when that is not the broker’s group', () => {
    const secret = apiSecret();
    const worldReadable = secretFile('world', `ops:${secret}\n`, 0o644);
    const groupReadable = secretFile('group', `svc:${apiSecret()}\n`, 0o640);
    const env = { ADMIN_API_KEYS_FILE: worldReadable, SERVICE_API_KEYS_FILE: groupReadable };
    const problems: string[] = [];

    const foreignGroup: string[] = [];
    readSecretFiles(env, problems, foreignGroup, { gid: -1 });
    const ownGroup: string[] = [];
    readSecretFiles(env, problems, ownGroup, { gid: process.getegid!() });

    expect(problems).toEqual([]);
    expect(foreignGroup).toEqual([
      `SERVICE_API_KEYS_FILE: ${groupReadable} is readable by its group (mode 0640); restrict it to the broker's user (chmod 600)`,
      `ADMIN_API_KEYS_FILE: ${worldReadable} is readable by every user (mode 0644); restrict it to the broker's user (chmod 600)`,
    ]);
    // A Kubernetes secret volume is group-readable by the pod's fsGroup, the broker's own group.
    expect(ownGroup).toEqual([`ADMIN_API_KEYS_FILE: ${worldReadable} is readable by every user (mode 0644); restrict it to the broker's user (chmod 600)`]);
    expect([...foreignGroup, ...ownGroup].join('\n')).not.toContain(secret);
  });

  it('follows the symbolic links a Kubernetes secret volume is made of', () => {
    const data = join(dir, '..data');
    mkdirSync(data);
    writeFileSync(join(data, 'admin-api-keys'), 'ops:linked-secret-of-enough-length\n', { mode: 0o600 });
    symlinkSync(join('..data', 'admin-api-keys'), join(dir, 'admin-api-keys'));

    const problems: string[] = [];
    const env = readSecretFiles({ ADMIN_API_KEYS_FILE: join(dir, 'admin-api-keys') }, problems, []);

    expect(problems).toEqual([]);
    expect(env.ADMIN_API_KEYS).toBe('ops:linked-secret-of-enough-length');
  });

  it('leaves the environment as it was when no _FILE variable is set, and never changes the caller’s object', () => {
    const env = { ADMIN_API_KEYS: 'ops:x' };
    expect(readSecretFiles(env, [], [])).toBe(env);

    const withFile = { SERVICE_API_KEYS_FILE: secretFile('service', 'svc:y\n') };
    const resolved = readSecretFiles(withFile, [], []);
    expect(resolved.SERVICE_API_KEYS).toBe('svc:y');
    expect(withFile).toEqual({ SERVICE_API_KEYS_FILE: join(dir, 'service') });
  });
});
