/**
 * What an operator sees when starting the broker: working defaults on a laptop, one message
 * listing every problem otherwise, nothing secret generated in production, and no secret in
 * any message.
 */
import { providerDefinition } from '@app/providers';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from './load-config';

const key = (): string => randomBytes(32).toString('base64');
const apiSecret = (): string => randomBytes(24).toString('base64url');

function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected loadConfig to refuse this environment');
}

function readEnvFile(path: string): Record<string, string> {
  const values: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const match = /^([A-Z_]+)=(.*)$/.exec(line);
    if (match) values[match[1]] = match[2];
  }
  return values;
}

/** The secret halves of a `name:secret,...` or `kid:key,...` spec. */
function secretParts(spec: string): string[] {
  return spec.split(',').map((entry) => entry.slice(entry.indexOf(':') + 1));
}

describe('loadConfig', () => {
  let dataDir: string;
  let explicitSecrets: NodeJS.ProcessEnv;

  beforeEach(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'tb-config-'));
    explicitSecrets = {
      TOKEN_ENCRYPTION_KEYS: `k1:${key()}`,
      SERVICE_API_KEYS: `billing:${apiSecret()}`,
      ADMIN_API_KEYS: `ops:${apiSecret()}`,
    };
  });

  afterEach(() => {
    rmSync(dataDir, { recursive: true, force: true });
  });

  describe('outside production', () => {
    it('starts with the documented defaults and nothing but a DATA_DIR', () => {
      const { config } = loadConfig({ DATA_DIR: dataDir });

      expect(config.nodeEnv).toBe('development');
      expect(config.isProduction).toBe(false);
      expect(config.port).toBe(3000);
      expect(config.host).toBe('0.0.0.0');
      expect(config.databaseUrl).toBeUndefined();
      expect(config.dataDir).toBe(dataDir);
      expect(config.publicUrl).toBe('http://localhost:3000');
      expect(config.connectReturnOrigins).toEqual(['http://localhost:*']);
      expect(config.providers).toEqual({});
      expect(config.serviceApiKeys).toHaveLength(1);
      expect(config.adminApiKeys).toHaveLength(1);
      expect(config.tokenEncryptionKeys).toMatch(/^[A-Za-z0-9_-]+:[A-Za-z0-9+/=_-]+$/);
    });

    it('derives PUBLIC_URL from PORT and trims a trailing slash from an explicit one', () => {
      expect(loadConfig({ DATA_DIR: dataDir, PORT: '8080' }).config.publicUrl).toBe('http://localhost:8080');
      expect(loadConfig({ DATA_DIR: dataDir, PUBLIC_URL: 'https://broker.example.com/' }).config.publicUrl).toBe(
        'https://broker.example.com',
      );
    });

    it('treats an empty variable as unset', () => {
      const { config } = loadConfig({ DATA_DIR: dataDir, PORT: '', DATABASE_URL: '  ', COPPER_CLIENT_ID: '' });
      expect(config.port).toBe(3000);
      expect(config.databaseUrl).toBeUndefined();
      expect(config.providers).toEqual({});
    });
  });

  describe('a bad environment', () => {
    it('reports every problem in one ConfigError that names each variable and quotes no secret', () => {
      const shortServiceSecret = `tooShort${randomBytes(4).toString('hex')}`;
      const wrongLengthKey = randomBytes(16).toString('base64');
      const bareKey = key();
      const copyAiSecret = apiSecret();

      const error = configError({
        DATA_DIR: dataDir,
        PORT: 'abc',
        TOKEN_ENCRYPTION_KEYS: `k1:${wrongLengthKey},${bareKey}`,
        SERVICE_API_KEYS: `billing:${shortServiceSecret}`,
        ADMIN_API_KEYS: explicitSecrets.ADMIN_API_KEYS,
        CONNECT_RETURN_ORIGINS: 'https://app.example.com/after-connect',
        COPYAI_CLIENT_ID: 'copyai-client',
        COPYAI_CLIENT_SECRET: copyAiSecret,
      });

      for (const variable of ['PORT', 'TOKEN_ENCRYPTION_KEYS', 'SERVICE_API_KEYS', 'CONNECT_RETURN_ORIGINS', 'COPYAI_AUTHORIZE_URL', 'COPYAI_TOKEN_URL']) {
        expect(error.message).toContain(variable);
      }
      expect(error.message).toMatch(/PORT: .*whole number/);
      // Two key-ring entries, both wrong: both reported.
      expect(error.problems.filter((p) => p.startsWith('TOKEN_ENCRYPTION_KEYS'))).toHaveLength(2);
      expect(error.problems.length).toBeGreaterThanOrEqual(6);
      expect(error.message.split('\n').length).toBe(error.problems.length + 1);

      for (const secret of [shortServiceSecret, wrongLengthKey, bareKey, copyAiSecret, ...secretParts(explicitSecrets.ADMIN_API_KEYS as string)]) {
        expect(error.message).not.toContain(secret);
      }
    });

    it('does not echo a malformed DATABASE_URL, which carries a password', () => {
      const password = `pw-${randomBytes(8).toString('hex')}`;
      const error = configError({ DATA_DIR: dataDir, ...explicitSecrets, DATABASE_URL: `mysql://broker:${password}@db.internal/broker` });
      expect(error.message).toContain('DATABASE_URL');
      expect(error.message).not.toContain(password);
    });

    it('refuses a secret used both as a service and as an admin key, without quoting it', () => {
      const shared = apiSecret();
      const error = configError({ DATA_DIR: dataDir, SERVICE_API_KEYS: `svc:${shared}`, ADMIN_API_KEYS: `ops:${shared}` });
      expect(error.message).toMatch(/SERVICE_API_KEYS and ADMIN_API_KEYS/);
      expect(error.message).not.toContain(shared);
    });

    it('reports a port out of range and an unknown NODE_ENV', () => {
      const error = configError({ DATA_DIR: dataDir, ...explicitSecrets, PORT: '70000', NODE_ENV: 'staging' });
      expect(error.problems).toEqual(expect.arrayContaining([expect.stringMatching(/^PORT: .*65535/), expect.stringMatching(/^NODE_ENV: /)]));
    });
  });

  describe('in production', () => {
    it('refuses to start without DATABASE_URL and secrets, and generates nothing', () => {
      const productionDataDir = join(dataDir, 'never-created');
      const error = configError({ NODE_ENV: 'production', DATA_DIR: productionDataDir });

      for (const variable of ['DATABASE_URL', 'PUBLIC_URL', 'TOKEN_ENCRYPTION_KEYS', 'SERVICE_API_KEYS', 'ADMIN_API_KEYS', 'CONNECT_RETURN_ORIGINS', 'SERVICE_GRANTS']) {
        expect(error.problems.some((p) => p.startsWith(`${variable}:`))).toBe(true);
      }
      expect(existsSync(productionDataDir)).toBe(false);
      expect(readdirSync(dataDir)).toEqual([]);
    });

    it('refuses when only some secrets are given, still generating none', () => {
      const error = configError({
        NODE_ENV: 'production',
        DATA_DIR: dataDir,
        DATABASE_URL: 'postgres://broker@db.internal/broker',
        PUBLIC_URL: 'https://broker.example.com',
        CONNECT_RETURN_ORIGINS: 'https://app.example.com',
        TOKEN_ENCRYPTION_KEYS: explicitSecrets.TOKEN_ENCRYPTION_KEYS,
        SERVICE_GRANTS: '*=*/*',
      });
      expect(error.problems).toEqual([expect.stringMatching(/^SERVICE_API_KEYS: required/), expect.stringMatching(/^ADMIN_API_KEYS: required/)]);
      expect(readdirSync(dataDir)).toEqual([]);
    });

    it('starts when everything is given, with no notices and no files', () => {
      const { config, notices } = loadConfig({
        NODE_ENV: 'production',
        DATA_DIR: dataDir,
        DATABASE_URL: 'postgres://broker@db.internal/broker',
        PUBLIC_URL: 'https://broker.example.com',
        CONNECT_RETURN_ORIGINS: 'https://app.example.com',
        SERVICE_GRANTS: 'billing=copper/*',
        ...explicitSecrets,
      });
      expect(config.connectReturnOrigins).toEqual(['https://app.example.com']);
      expect(config.isProduction).toBe(true);
      expect(config.databaseUrl).toBe('postgres://broker@db.internal/broker');
      expect(config.tokenEncryptionKeys).toBe(explicitSecrets.TOKEN_ENCRYPTION_KEYS);
      expect(config.serviceApiKeys).toEqual([{ name: 'billing', secret: secretParts(explicitSecrets.SERVICE_API_KEYS as string)[0] }]);
      expect(notices).toEqual([]);
      expect(readdirSync(dataDir)).toEqual([]);
    });
  });

  describe('in production, plain http', () => {
    const production = (extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({
      NODE_ENV: 'production',
      DATA_DIR: dataDir,
      DATABASE_URL: 'postgres://broker@db.internal/broker',
      PUBLIC_URL: 'https://broker.example.com',
      CONNECT_RETURN_ORIGINS: 'https://app.example.com',
      SERVICE_GRANTS: '*=*/*',
      ...explicitSecrets,
      ...extra,
    });

    it('is refused for PUBLIC_URL, every provider endpoint and an issuer, all in one message', () => {
      const error = configError(
        production({
          PUBLIC_URL: 'http://broker.example.com',
          COPPER_CLIENT_ID: 'copper-client',
          COPPER_CLIENT_SECRET: apiSecret(),
          COPPER_TOKEN_URL: 'http://copper.internal/oauth/token',
          COPYAI_CLIENT_ID: 'copyai-client',
          COPYAI_CLIENT_SECRET: apiSecret(),
          COPYAI_AUTHORIZE_URL: 'http://auth.copy.example/authorize',
          COPYAI_TOKEN_URL: 'http://auth.copy.example/token',
          COPYAI_REVOKE_URL: 'http://auth.copy.example/revoke',
          COPYAI_API_URL: 'http://api.copy.example',
          COPYAI_ISSUER: 'http://auth.copy.example',
        }),
      );
      const refused = ['PUBLIC_URL', 'COPPER_TOKEN_URL', 'COPYAI_AUTHORIZE_URL', 'COPYAI_TOKEN_URL', 'COPYAI_REVOKE_URL', 'COPYAI_API_URL', 'COPYAI_ISSUER'];
      expect(error.problems).toHaveLength(refused.length);
      for (const variable of refused) {
        expect(error.problems).toContainEqual(expect.stringMatching(new RegExp(`^${variable}: must be https in production`)));
      }
    });

    it('is allowed for loopback hosts (127.0.0.0/8, ::1, localhost)', () => {
      const { config } = loadConfig(
        production({
          PUBLIC_URL: 'http://localhost:3000',
          COPYAI_CLIENT_ID: 'copyai-client',
          COPYAI_CLIENT_SECRET: apiSecret(),
          COPYAI_AUTHORIZE_URL: 'http://127.0.0.1:4010/copyai/oauth/authorize',
          COPYAI_TOKEN_URL: 'http://127.9.8.7:4010/copyai/oauth/token',
          COPYAI_API_URL: 'http://[::1]:4010/copyai/api',
          COPYAI_ISSUER: 'http://localhost:4010/copyai',
        }),
      );
      expect(config.publicUrl).toBe('http://localhost:3000');
      expect(config.providers.copyai?.endpoints.tokenUrl).toBe('http://127.9.8.7:4010/copyai/oauth/token');
      expect(config.providers.copyai?.issuer).toBe('http://localhost:4010/copyai');
    });

    it('requires CONNECT_RETURN_ORIGINS to be set: no localhost default', () => {
      const error = configError(production({ CONNECT_RETURN_ORIGINS: undefined }));
      expect(error.problems).toEqual([expect.stringMatching(/^CONNECT_RETURN_ORIGINS: required in production/)]);
      expect(loadConfig(production({ CONNECT_RETURN_ORIGINS: 'http://localhost:*' })).config.connectReturnOrigins).toEqual(['http://localhost:*']);
    });
  });

  describe('development secrets', () => {
    it('are generated once into DATA_DIR/dev-secrets.env (0600) and reused on the next start', () => {
      const devSecrets = join(dataDir, 'dev-secrets.env');
      const first = loadConfig({ DATA_DIR: dataDir });

      expect(statSync(devSecrets).mode & 0o777).toBe(0o600);
      const file = readEnvFile(devSecrets);
      expect(first.config.tokenEncryptionKeys).toBe(file.TOKEN_ENCRYPTION_KEYS);
      expect(first.config.serviceApiKeys.map((k) => `${k.name}:${k.secret}`).join(',')).toBe(file.SERVICE_API_KEYS);
      expect(first.config.adminApiKeys.map((k) => `${k.name}:${k.secret}`).join(',')).toBe(file.ADMIN_API_KEYS);

      const second = loadConfig({ DATA_DIR: dataDir });
      expect(second.config.tokenEncryptionKeys).toBe(first.config.tokenEncryptionKeys);
      expect(second.config.serviceApiKeys).toEqual(first.config.serviceApiKeys);
      expect(second.config.adminApiKeys).toEqual(first.config.adminApiKeys);
      expect(readEnvFile(devSecrets)).toEqual(file);
      expect(second.notices.join('\n')).not.toMatch(/Generated/);

      const secrets = [file.TOKEN_ENCRYPTION_KEYS, file.SERVICE_API_KEYS, file.ADMIN_API_KEYS].flatMap(secretParts);
      for (const notices of [first.notices, second.notices]) {
        expect(notices.join('\n')).toContain(devSecrets);
        for (const secret of secrets) expect(notices.join('\n')).not.toContain(secret);
      }
      expect(first.notices.join('\n')).toMatch(/Generated .*TOKEN_ENCRYPTION_KEYS/);
      for (const secret of secrets) expect(JSON.stringify(first.config)).not.toContain(secret);
    });

    it('generates only what is missing and never overrides an explicit value', () => {
      const { config } = loadConfig({ DATA_DIR: dataDir, SERVICE_API_KEYS: explicitSecrets.SERVICE_API_KEYS });
      const file = readEnvFile(join(dataDir, 'dev-secrets.env'));

      expect(file.SERVICE_API_KEYS).toBeUndefined();
      expect(Object.keys(file).sort()).toEqual(['ADMIN_API_KEYS', 'TOKEN_ENCRYPTION_KEYS']);
      expect(config.serviceApiKeys.map((k) => k.name)).toEqual(['billing']);
    });

    it('generates nothing when every secret is given', () => {
      const { notices } = loadConfig({ DATA_DIR: dataDir, ...explicitSecrets, SERVICE_GRANTS: '*=*/*' });
      expect(notices).toEqual([]);
      expect(existsSync(join(dataDir, 'dev-secrets.env'))).toBe(false);
    });
  });

  describe('providers', () => {
    const base = (): NodeJS.ProcessEnv => ({ DATA_DIR: dataDir, ...explicitSecrets });

    it('are enabled only when their CLIENT_ID is set', () => {
      const { config } = loadConfig({ ...base(), COPPER_SCOPE: 'ignored/without/client', COPYAI_API_URL: 'https://api.copy.example' });
      expect(config.providers).toEqual({});
      const copperOnly = loadConfig({ ...base(), COPPER_CLIENT_ID: 'copper-client', COPPER_CLIENT_SECRET: apiSecret() }).config;
      expect(Object.keys(copperOnly.providers)).toEqual(['copper']);
    });

    it('take their endpoints and scope from the registry by default', () => {
      const secret = apiSecret();
      const { config } = loadConfig({ ...base(), COPPER_CLIENT_ID: 'copper-client', COPPER_CLIENT_SECRET: secret, COPERNICA_CLIENT_ID: 'cop-key', COPERNICA_CLIENT_SECRET: apiSecret() });
      const copper = providerDefinition('copper');
      expect(config.providers.copper).toEqual({
        id: 'copper',
        clientId: 'copper-client',
        clientSecret: secret,
        endpoints: copper.defaultEndpoints,
        scope: copper.defaultScope,
        usePkce: false,
        clientAuth: 'client_secret_post',
        authorizeParams: {},
        issuer: null,
      });
      expect(config.providers.copper?.scope).toBe('developer/v1/all');
      expect(config.providers.copernica?.endpoints).toEqual(providerDefinition('copernica').defaultEndpoints);
      expect(config.providers.copernica?.scope).toBeNull();
      expect(JSON.stringify(config)).not.toContain(secret);
    });

    it('honour endpoint, scope and PKCE overrides', () => {
      const { config } = loadConfig({
        ...base(),
        COPPER_CLIENT_ID: 'copper-client',
        COPPER_CLIENT_SECRET: apiSecret(),
        COPPER_TOKEN_URL: 'http://127.0.0.1:4010/copper/oauth/token/',
        COPPER_USE_PKCE: 'true',
        COPYAI_CLIENT_ID: 'copyai-client',
        COPYAI_CLIENT_SECRET: apiSecret(),
        COPYAI_AUTHORIZE_URL: 'https://auth.copy.example/authorize',
        COPYAI_TOKEN_URL: 'https://auth.copy.example/token',
        COPYAI_REVOKE_URL: 'https://auth.copy.example/revoke',
        COPYAI_SCOPE: 'workflows:read',
      });
      expect(config.providers.copper?.endpoints).toEqual({ ...providerDefinition('copper').defaultEndpoints, tokenUrl: 'http://127.0.0.1:4010/copper/oauth/token' });
      expect(config.providers.copper?.usePkce).toBe(true);
      expect(config.providers.copyai).toMatchObject({
        endpoints: {
          authorizeUrl: 'https://auth.copy.example/authorize',
          tokenUrl: 'https://auth.copy.example/token',
          revokeUrl: 'https://auth.copy.example/revoke',
          apiUrl: providerDefinition('copyai').defaultEndpoints.apiUrl,
        },
        scope: 'workflows:read',
      });
    });

    it('refuse half a configuration, without quoting the client secret', () => {
      const secret = apiSecret();
      const error = configError({ ...base(), COPPER_CLIENT_SECRET: secret, COPERNICA_CLIENT_ID: 'cop-key', COPPER_USE_PKCE: 'yes', COPERNICA_TOKEN_URL: 'ftp://x' });
      expect(error.problems).toEqual(
        expect.arrayContaining([
          expect.stringMatching(/^COPPER_CLIENT_SECRET: set without COPPER_CLIENT_ID/),
          expect.stringMatching(/^COPERNICA_CLIENT_SECRET: required/),
          expect.stringMatching(/^COPERNICA_TOKEN_URL: must be an http\(s\) URL/),
        ]),
      );
      expect(error.message).not.toContain(secret);
    });
  });

  describe('provider client authentication, authorize parameters, issuer and PKCE', () => {
    const copyaiEnv = (extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv => ({
      DATA_DIR: dataDir,
      ...explicitSecrets,
      COPYAI_CLIENT_ID: 'copyai-client',
      COPYAI_CLIENT_SECRET: apiSecret(),
      COPYAI_AUTHORIZE_URL: 'https://auth.copy.example/authorize',
      COPYAI_TOKEN_URL: 'https://auth.copy.example/token',
      ...extra,
    });

    it('authenticate with client_secret_post unless COPYAI_CLIENT_AUTH says client_secret_basic', () => {
      expect(loadConfig(copyaiEnv()).config.providers.copyai?.clientAuth).toBe('client_secret_post');
      expect(loadConfig(copyaiEnv({ COPYAI_CLIENT_AUTH: 'client_secret_basic' })).config.providers.copyai?.clientAuth).toBe('client_secret_basic');
      expect(loadConfig(copyaiEnv({ COPYAI_CLIENT_AUTH: 'client_secret_post' })).config.providers.copyai?.clientAuth).toBe('client_secret_post');
      const error = configError(copyaiEnv({ COPYAI_CLIENT_AUTH: 'basic' }));
      expect(error.problems).toEqual([expect.stringMatching(/^COPYAI_CLIENT_AUTH: must be client_secret_post or client_secret_basic \(got "basic"\)/)]);
    });

    it('read COPYAI_AUTHORIZE_PARAMS as a URL-encoded string', () => {
      const { config } = loadConfig(copyaiEnv({ COPYAI_AUTHORIZE_PARAMS: 'prompt=consent&access_type=offline&login_hint=ada%40example.test&display=a+page&empty=' }));
      expect(config.providers.copyai?.authorizeParams).toEqual({
        prompt: 'consent',
        access_type: 'offline',
        login_hint: 'ada@example.test',
        display: 'a page',
        empty: '',
      });
      expect(loadConfig(copyaiEnv()).config.providers.copyai?.authorizeParams).toEqual({});
    });

    it('refuse authorize parameters that would override what the broker sends, and malformed ones, each by name', () => {
      const reserved = ['state', 'redirect_uri', 'client_id', 'response_type', 'code_challenge', 'code_challenge_method', 'scope'];
      const error = configError(copyaiEnv({ COPYAI_AUTHORIZE_PARAMS: `prompt=consent&${reserved.map((k) => `${k}=x`).join('&')}` }));
      expect(error.problems).toHaveLength(reserved.length);
      for (const key of reserved) {
        expect(error.problems).toContainEqual(expect.stringMatching(new RegExp(`^COPYAI_AUTHORIZE_PARAMS: may not set "${key}"`)));
      }
      expect(error.problems.find((p) => p.includes('"scope"'))).toMatch(/COPYAI_SCOPE/);

      for (const malformed of ['=consent', 'prompt', 'prompt=consent&&access_type=offline', 'prompt=%zz', 'prompt=a&prompt=b', '&']) {
        const problems = configError(copyaiEnv({ COPYAI_AUTHORIZE_PARAMS: malformed })).problems;
        expect(problems).toEqual([expect.stringMatching(/^COPYAI_AUTHORIZE_PARAMS: /)]);
      }
    });

    it('keep COPYAI_ISSUER exactly as given (RFC 9207 compares it character for character)', () => {
      expect(loadConfig(copyaiEnv()).config.providers.copyai?.issuer).toBeNull();
      expect(loadConfig(copyaiEnv({ COPYAI_ISSUER: 'https://auth.copy.example/' })).config.providers.copyai?.issuer).toBe('https://auth.copy.example/');
      expect(loadConfig(copyaiEnv({ COPYAI_ISSUER: 'https://auth.copy.example' })).config.providers.copyai?.issuer).toBe('https://auth.copy.example');
      // http outside production, as against the sandbox
      expect(loadConfig(copyaiEnv({ COPYAI_ISSUER: 'http://issuer.internal/copyai' })).config.providers.copyai?.issuer).toBe('http://issuer.internal/copyai');
      for (const bad of ['auth.copy.example', 'ftp://auth.copy.example', 'https://auth.copy.example/?tenant=1', 'https://auth.copy.example/#x']) {
        expect(configError(copyaiEnv({ COPYAI_ISSUER: bad })).problems).toEqual([expect.stringMatching(/^COPYAI_ISSUER: /)]);
      }
    });

    it('send PKCE to Copy.ai by default and not to Copper or Copernica, unless told otherwise', () => {
      const env = copyaiEnv({ COPPER_CLIENT_ID: 'copper-client', COPPER_CLIENT_SECRET: apiSecret(), COPERNICA_CLIENT_ID: 'cop-key', COPERNICA_CLIENT_SECRET: apiSecret() });
      const { providers } = loadConfig(env).config;
      expect([providers.copyai?.usePkce, providers.copper?.usePkce, providers.copernica?.usePkce]).toEqual([true, false, false]);
      const flipped = loadConfig({ ...env, COPYAI_USE_PKCE: 'false', COPPER_USE_PKCE: 'true' }).config.providers;
      expect([flipped.copyai?.usePkce, flipped.copper?.usePkce, flipped.copernica?.usePkce]).toEqual([false, true, false]);
    });
  });

  describe('tuning (REFRESH_*, TOKEN_CACHE_MAX_ACCOUNTS, DATABASE_POOL_SIZE)', () => {
    it('defaults to the documented values', () => {
      const { config } = loadConfig({ DATA_DIR: dataDir });
      expect(config.refresh).toEqual({
        schedulerEnabled: true,
        sweepIntervalMs: 5_000,
        batchSize: 200,
        concurrency: 20,
        providerBudgetPerMinute: 1_200,
        leaseMs: 30_000,
      });
      expect(config.tokenCacheMaxAccounts).toBe(100_000);
      expect(config.databasePoolSize).toBe(10);
    });

    it('takes explicit values, 0 turning the token cache off', () => {
      const { config } = loadConfig({
        DATA_DIR: dataDir,
        REFRESH_SCHEDULER_ENABLED: 'false',
        REFRESH_SWEEP_INTERVAL_MS: '250',
        REFRESH_BATCH_SIZE: '50',
        REFRESH_CONCURRENCY: '4',
        REFRESH_PROVIDER_BUDGET_PER_MINUTE: '60',
        REFRESH_LEASE_MS: '5000',
        TOKEN_CACHE_MAX_ACCOUNTS: '0',
        DATABASE_POOL_SIZE: '40',
      });
      expect(config.refresh).toEqual({ schedulerEnabled: false, sweepIntervalMs: 250, batchSize: 50, concurrency: 4, providerBudgetPerMinute: 60, leaseMs: 5_000 });
      expect(config.tokenCacheMaxAccounts).toBe(0);
      expect(config.databasePoolSize).toBe(40);
    });

    it('reports every value out of range or not a number, by name', () => {
      const error = configError({
        DATA_DIR: dataDir,
        REFRESH_SCHEDULER_ENABLED: 'sometimes',
        REFRESH_SWEEP_INTERVAL_MS: '10',
        REFRESH_BATCH_SIZE: '0',
        REFRESH_CONCURRENCY: '2.5',
        REFRESH_PROVIDER_BUDGET_PER_MINUTE: '-1',
        REFRESH_LEASE_MS: 'soon',
        TOKEN_CACHE_MAX_ACCOUNTS: '1e9',
        DATABASE_POOL_SIZE: '0',
      });
      for (const variable of [
        'REFRESH_SCHEDULER_ENABLED',
        'REFRESH_SWEEP_INTERVAL_MS',
        'REFRESH_BATCH_SIZE',
        'REFRESH_CONCURRENCY',
        'REFRESH_PROVIDER_BUDGET_PER_MINUTE',
        'REFRESH_LEASE_MS',
        'TOKEN_CACHE_MAX_ACCOUNTS',
        'DATABASE_POOL_SIZE',
      ]) {
        expect(error.problems.filter((problem) => problem.startsWith(`${variable}:`))).toHaveLength(1);
      }
    });
  });

  describe('SERVICE_GRANTS and AUDIT_RETENTION_DAYS', () => {
    const production = (extra: NodeJS.ProcessEnv): NodeJS.ProcessEnv => ({
      NODE_ENV: 'production',
      DATA_DIR: dataDir,
      DATABASE_URL: 'postgres://broker@db.internal/broker',
      PUBLIC_URL: 'https://broker.example.com',
      CONNECT_RETURN_ORIGINS: 'https://app.example.com',
      ...explicitSecrets,
      SERVICE_API_KEYS: `billing:${apiSecret()},crm:${apiSecret()}`,
      ...extra,
    });

    it('are required in production, where nothing is assumed', () => {
      const error = configError(production({}));
      expect(error.problems).toEqual([expect.stringMatching(/^SERVICE_GRANTS: required in production/)]);
    });

    it('outside production, unset, allow everything with a warning', () => {
      const { config, notices } = loadConfig({ DATA_DIR: dataDir, ...explicitSecrets });
      expect(config.serviceGrants).toBeNull();
      expect(notices).toEqual([expect.stringMatching(/^SERVICE_GRANTS is unset: every service key may read every token/)]);
      expect(config.auditRetentionDays).toBe(90);
    });

    it('parse exact ids, prefixes and wildcards, and * for every key, and show them in the harmless view', () => {
      const { config, notices } = loadConfig(production({ SERVICE_GRANTS: ' billing=copper/*, billing=copyai/acme-* ,crm=*/initech,*=copernica/*', AUDIT_RETENTION_DAYS: '30' }));
      expect(notices).toEqual([]);
      expect(config.serviceGrants).toEqual([
        { service: 'billing', provider: 'copper', account: { kind: 'any' } },
        { service: 'billing', provider: 'copyai', account: { kind: 'prefix', prefix: 'acme-' } },
        { service: 'crm', provider: '*', account: { kind: 'exact', id: 'initech' } },
        { service: '*', provider: 'copernica', account: { kind: 'any' } },
      ]);
      expect(config.auditRetentionDays).toBe(30);
      expect(config.toJSON().serviceGrants).toEqual(['billing=copper/*', 'billing=copyai/acme-*', 'crm=*/initech', '*=copernica/*']);
    });

    it('list every bad entry in one message: unknown key names and providers, bad patterns, bad syntax', () => {
      const error = configError(
        production({
          SERVICE_GRANTS: 'billing=copper/*,reporting=copper/*,billing=salesforce/*,crm=copyai/acme*x,crm=copyai/bad id,billing-copper,,crm=*/*',
          AUDIT_RETENTION_DAYS: '0',
        }),
      );
      expect(error.problems).toEqual([
        expect.stringMatching(/^SERVICE_GRANTS entry 2: "reporting" is not a key name in SERVICE_API_KEYS \(billing, crm\)/),
        expect.stringMatching(/^SERVICE_GRANTS entry 3: "salesforce" is not a provider/),
        expect.stringMatching(/^SERVICE_GRANTS entry 4: "acme\*x" is not an account pattern/),
        expect.stringMatching(/^SERVICE_GRANTS entry 5: "bad id" is not an account pattern/),
        expect.stringMatching(/^SERVICE_GRANTS entry 6: expected service=provider\/accountPattern/),
        expect.stringMatching(/^SERVICE_GRANTS entry 7: expected service=provider\/accountPattern/),
        expect.stringMatching(/^AUDIT_RETENTION_DAYS: must be a whole number from 1/),
      ]);
      // A grant never holds a secret, but a key's secret must not leak through a problem about its name.
      for (const secret of secretParts(production({}).SERVICE_API_KEYS as string)) expect(error.message).not.toContain(secret);
    });
  });
});
