import { parseKeyRingSpec } from '@app/crypto';
import { PROVIDER_DEFINITIONS, ProviderDefinition, ProviderEndpoints, ProviderId, ProviderSettings } from '@app/providers';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { resolve } from 'node:path';
import { AppConfig } from './app-config';
import { DevSecretsFile, GENERATED_SECRET_VARIABLES, GeneratedSecretVariable } from './dev-secrets';
import { EnvironmentVariables } from './environment-variables';
import { parseNamedSecrets } from './named-secret';

/** Thrown when the environment is unusable; the message lists every problem, one per line. */
export class ConfigError extends Error {
  constructor(readonly problems: ReadonlyArray<string>) {
    super(`Invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  config: AppConfig;
  /** Things start-up should tell the operator (never a secret value). */
  notices: string[];
}

const ORIGIN_PATTERN = /^https?:\/\/(\*\.)?[A-Za-z0-9.-]+(:(\d{1,5}|\*))?$/;
const ENDPOINT_VARIABLES: Record<keyof ProviderEndpoints, string> = {
  authorizeUrl: 'AUTHORIZE_URL',
  tokenUrl: 'TOKEN_URL',
  apiUrl: 'API_URL',
  revokeUrl: 'REVOKE_URL',
};

/**
 * Reads the environment into an AppConfig. Outside production, missing secrets are
 * generated once into DATA_DIR (see DevSecretsFile); in production they are required.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const problems: string[] = [];
  const notices: string[] = [];
  const read = (name: string): string | undefined => {
    const value = env[name]?.trim();
    return value === '' ? undefined : value;
  };

  const scalars = plainToInstance(EnvironmentVariables, {
    NODE_ENV: read('NODE_ENV'),
    PORT: read('PORT'),
    HOST: read('HOST'),
    DATABASE_URL: read('DATABASE_URL'),
    DATA_DIR: read('DATA_DIR'),
    PUBLIC_URL: read('PUBLIC_URL'),
    LOG_LEVEL: read('LOG_LEVEL'),
  });
  for (const error of validateSync(scalars, { forbidUnknownValues: false })) {
    const messages = Object.values(error.constraints ?? {});
    // A database URL carries a password: say what is wrong with it, never what it is.
    const got = error.property === 'DATABASE_URL' ? '' : ` (got "${String(error.value)}")`;
    problems.push(`${error.property}: ${messages[0] ?? 'invalid'}${got}`);
  }

  const nodeEnv = (scalars.NODE_ENV ?? 'development') as AppConfig['nodeEnv'];
  const production = nodeEnv === 'production';
  const port = typeof scalars.PORT === 'number' ? scalars.PORT : 3000;
  const dataDir = resolve(scalars.DATA_DIR ?? '.data');

  if (production && !scalars.DATABASE_URL) problems.push('DATABASE_URL: required in production');
  if (production && !scalars.PUBLIC_URL) problems.push('PUBLIC_URL: required in production');

  const secrets = resolveSecrets(read, production, dataDir, problems, notices);

  const keyRing = secrets.TOKEN_ENCRYPTION_KEYS;
  if (keyRing !== undefined) {
    for (const problem of parseKeyRingSpec(keyRing).problems) problems.push(`TOKEN_ENCRYPTION_KEYS: ${problem}`);
  }
  const serviceApiKeys = parseSecretsVariable('SERVICE_API_KEYS', secrets.SERVICE_API_KEYS, problems);
  const adminApiKeys = parseSecretsVariable('ADMIN_API_KEYS', secrets.ADMIN_API_KEYS, problems);
  const shared = serviceApiKeys.filter((s) => adminApiKeys.some((a) => a.secret === s.secret));
  if (shared.length > 0) problems.push('SERVICE_API_KEYS and ADMIN_API_KEYS: a secret is used as both a service and an admin key');

  const connectReturnOrigins = (read('CONNECT_RETURN_ORIGINS') ?? 'http://localhost:*')
    .split(',')
    .map((o) => o.trim())
    .filter((o) => o !== '');
  for (const origin of connectReturnOrigins) {
    if (!ORIGIN_PATTERN.test(origin)) {
      problems.push(`CONNECT_RETURN_ORIGINS: "${origin}" is not an origin like https://app.example.com or http://localhost:*`);
    }
  }

  const providers: Partial<Record<ProviderId, ProviderSettings>> = {};
  for (const definition of PROVIDER_DEFINITIONS) {
    const settings = readProvider(definition, read, problems);
    if (settings) providers[definition.id] = settings;
  }

  const refresh = {
    schedulerEnabled: readBoolean(read, 'REFRESH_SCHEDULER_ENABLED', true, problems),
    sweepIntervalMs: readInteger(read, 'REFRESH_SWEEP_INTERVAL_MS', 5_000, [100, 3_600_000], problems),
    batchSize: readInteger(read, 'REFRESH_BATCH_SIZE', 200, [1, 10_000], problems),
    concurrency: readInteger(read, 'REFRESH_CONCURRENCY', 20, [1, 1_000], problems),
    providerBudgetPerMinute: readInteger(read, 'REFRESH_PROVIDER_BUDGET_PER_MINUTE', 1_200, [1, 1_000_000], problems),
    leaseMs: readInteger(read, 'REFRESH_LEASE_MS', 30_000, [1_000, 600_000], problems),
  };

  const tokenCacheMaxAccounts = readInteger(read, 'TOKEN_CACHE_MAX_ACCOUNTS', 100_000, [0, 10_000_000], problems);

  if (problems.length > 0) throw new ConfigError(problems);

  const config = new AppConfig({
    nodeEnv,
    port,
    host: scalars.HOST ?? '0.0.0.0',
    databaseUrl: scalars.DATABASE_URL,
    dataDir,
    publicUrl: (scalars.PUBLIC_URL ?? `http://localhost:${port}`).replace(/\/+$/, ''),
    logLevel: scalars.LOG_LEVEL ?? (nodeEnv === 'test' ? 'warn' : 'info'),
    tokenEncryptionKeys: keyRing as string,
    serviceApiKeys,
    adminApiKeys,
    connectReturnOrigins,
    providers,
    refresh,
    tokenCacheMaxAccounts,
  });
  return { config, notices };
}

function resolveSecrets(
  read: (name: string) => string | undefined,
  production: boolean,
  dataDir: string,
  problems: string[],
  notices: string[],
): Partial<Record<GeneratedSecretVariable, string>> {
  const values: Partial<Record<GeneratedSecretVariable, string>> = {};
  const missing: GeneratedSecretVariable[] = [];
  for (const variable of GENERATED_SECRET_VARIABLES) {
    const value = read(variable);
    if (value !== undefined) values[variable] = value;
    else missing.push(variable);
  }
  if (missing.length === 0) return values;
  if (production) {
    for (const variable of missing) problems.push(`${variable}: required in production (nothing secret is generated there)`);
    return values;
  }
  const file = new DevSecretsFile(dataDir);
  try {
    const provided = file.provide(missing);
    Object.assign(values, provided.values);
    if (provided.generated.length > 0) {
      notices.push(`Generated ${provided.generated.join(', ')} for development into ${file.path} (mode 0600).`);
    }
    const callerKeys = missing.filter((v) => v !== 'TOKEN_ENCRYPTION_KEYS');
    if (callerKeys.length > 0) {
      notices.push(`${callerKeys.join(' and ')} for this machine are in ${file.path}; send them as "Authorization: Bearer <secret>".`);
    }
    if (missing.includes('TOKEN_ENCRYPTION_KEYS')) {
      notices.push(`TOKEN_ENCRYPTION_KEYS is read from ${file.path}: losing that file makes stored tokens unreadable. Set it explicitly outside development.`);
    }
  } catch (error) {
    problems.push(`DATA_DIR: cannot keep development secrets in ${file.path}: ${(error as Error).message}`);
  }
  return values;
}

function parseSecretsVariable(variable: string, spec: string | undefined, problems: string[]) {
  if (spec === undefined) return [];
  const parsed = parseNamedSecrets(variable, spec);
  problems.push(...parsed.problems);
  return parsed.secrets;
}

function readProvider(
  definition: ProviderDefinition,
  read: (name: string) => string | undefined,
  problems: string[],
): ProviderSettings | undefined {
  const prefix = definition.envPrefix;
  const clientId = read(`${prefix}_CLIENT_ID`);
  const clientSecret = read(`${prefix}_CLIENT_SECRET`);
  if (clientId === undefined) {
    if (clientSecret !== undefined) problems.push(`${prefix}_CLIENT_SECRET: set without ${prefix}_CLIENT_ID`);
    return undefined;
  }
  if (clientSecret === undefined) problems.push(`${prefix}_CLIENT_SECRET: required when ${prefix}_CLIENT_ID is set`);

  const endpoints: ProviderEndpoints = {};
  for (const [key, suffix] of Object.entries(ENDPOINT_VARIABLES) as Array<[keyof ProviderEndpoints, string]>) {
    const variable = `${prefix}_${suffix}`;
    const value = read(variable) ?? definition.defaultEndpoints[key];
    if (value === undefined) {
      if (definition.requiredEndpoints.includes(key)) problems.push(`${variable}: required when ${prefix}_CLIENT_ID is set`);
      continue;
    }
    if (!isHttpUrl(value)) {
      problems.push(`${variable}: must be an http(s) URL (got "${value}")`);
      continue;
    }
    endpoints[key] = value.replace(/\/+$/, '');
  }

  const usePkce = read(`${prefix}_USE_PKCE`);
  if (usePkce !== undefined && !['true', 'false'].includes(usePkce)) {
    problems.push(`${prefix}_USE_PKCE: must be true or false (got "${usePkce}")`);
  }
  return {
    id: definition.id,
    clientId,
    clientSecret: clientSecret ?? '',
    endpoints: endpoints as ProviderSettings['endpoints'],
    scope: read(`${prefix}_SCOPE`) ?? definition.defaultScope,
    usePkce: usePkce === 'true',
    clientAuth: 'client_secret_post',
    authorizeParams: {},
    issuer: null,
  };
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}

function readInteger(
  read: (name: string) => string | undefined,
  name: string,
  fallback: number,
  [min, max]: [number, number],
  problems: string[],
): number {
  const raw = read(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    problems.push(`${name}: must be a whole number from ${min} to ${max} (got "${raw}")`);
    return fallback;
  }
  return value;
}

function readBoolean(read: (name: string) => string | undefined, name: string, fallback: boolean, problems: string[]): boolean {
  const raw = read(name);
  if (raw === undefined) return fallback;
  if (raw === 'true' || raw === 'false') return raw === 'true';
  problems.push(`${name}: must be true or false (got "${raw}")`);
  return fallback;
}
