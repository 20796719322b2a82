import { parseKeyRingSpec } from '@app/crypto';
import { ClientAuthMethod, PROVIDER_DEFINITIONS, ProviderApi, ProviderDefinition, ProviderEndpoints, ProviderId, ProviderSettings } from '@app/providers';
import { plainToInstance } from 'class-transformer';
import { validateSync } from 'class-validator';
import { resolve } from 'node:path';
import { AppConfig } from './app-config';
import { DevSecretsFile, GENERATED_SECRET_VARIABLES, GeneratedSecretVariable } from './dev-secrets';
import { EnvironmentVariables } from './environment-variables';
import { parseNamedSecrets } from './named-secret';
import { readSecretFiles } from './secret-files';
import { parseServiceGrants, ServiceGrant } from './service-grants';
import { HTTPS_IN_PRODUCTION, isPlainHttpBeyondLoopback, readInteger } from './env-values';
import { readWebhookSettings } from './webhook-settings';

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
const CLIENT_AUTH_METHODS: ReadonlyArray<ClientAuthMethod> = ['client_secret_post', 'client_secret_basic'];
/**
 * Authorize parameters the broker sends itself; `<PREFIX>_AUTHORIZE_PARAMS` may not replace them.
 * `scope` is among them because it has its own variable (`<PREFIX>_SCOPE`): one place to look.
 */
const RESERVED_AUTHORIZE_PARAMS: ReadonlyArray<string> = ['state', 'redirect_uri', 'client_id', 'response_type', 'code_challenge', 'code_challenge_method', 'scope'];

/**
 * Reads the environment into an AppConfig. Outside production, missing secrets are
 * generated once into DATA_DIR (see DevSecretsFile); in production they are required.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): LoadedConfig {
  const problems: string[] = [];
  const notices: string[] = [];
  // <NAME>_FILE first: every check below sees a secret the same way, whichever form gave it.
  const source = readSecretFiles(env, problems, notices);
  const read = (name: string): string | undefined => {
    const value = source[name]?.trim();
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
  if (production && scalars.PUBLIC_URL && isPlainHttpBeyondLoopback(scalars.PUBLIC_URL)) {
    problems.push(`PUBLIC_URL: ${HTTPS_IN_PRODUCTION}`);
  }

  const webhookUrls = read('WEBHOOK_URLS');
  const secrets = resolveSecrets(read, webhookUrls !== undefined, production, dataDir, problems, notices);

  const keyRing = secrets.TOKEN_ENCRYPTION_KEYS;
  if (keyRing !== undefined) {
    for (const problem of parseKeyRingSpec(keyRing).problems) problems.push(`TOKEN_ENCRYPTION_KEYS: ${problem}`);
  }
  const serviceApiKeys = parseSecretsVariable('SERVICE_API_KEYS', secrets.SERVICE_API_KEYS, problems);
  const adminApiKeys = parseSecretsVariable('ADMIN_API_KEYS', secrets.ADMIN_API_KEYS, problems);
  const shared = serviceApiKeys.filter((s) => adminApiKeys.some((a) => a.secret === s.secret));
  if (shared.length > 0) problems.push('SERVICE_API_KEYS and ADMIN_API_KEYS: a secret is used as both a service and an admin key');
  const serviceGrants = readServiceGrants(read('SERVICE_GRANTS'), serviceApiKeys.map((k) => k.name), production, problems, notices);

  // In production the origins a browser may be sent back to are stated, never assumed.
  if (production && read('CONNECT_RETURN_ORIGINS') === undefined) {
    problems.push('CONNECT_RETURN_ORIGINS: required in production (the origins a connect returnTo may point at, e.g. https://app.example.com)');
  }
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
    const settings = readProvider(definition, read, production, problems);
    if (settings) providers[definition.id] = settings;
  }
  const providerApis = Object.fromEntries(
    PROVIDER_DEFINITIONS.map((definition) => [definition.id, readProviderApi(definition, providers[definition.id], read, production, problems)]),
  ) as Record<ProviderId, ProviderApi>;

  const refresh = {
    schedulerEnabled: readBoolean(read, 'REFRESH_SCHEDULER_ENABLED', true, problems),
    sweepIntervalMs: readInteger(read, 'REFRESH_SWEEP_INTERVAL_MS', 5_000, [100, 3_600_000], problems),
    batchSize: readInteger(read, 'REFRESH_BATCH_SIZE', 200, [1, 10_000], problems),
    concurrency: readInteger(read, 'REFRESH_CONCURRENCY', 20, [1, 1_000], problems),
    providerBudgetPerMinute: readInteger(read, 'REFRESH_PROVIDER_BUDGET_PER_MINUTE', 1_200, [1, 1_000_000], problems),
    leaseMs: readInteger(read, 'REFRESH_LEASE_MS', 30_000, [1_000, 600_000], problems),
  };

  const tokenCacheMaxAccounts = readInteger(read, 'TOKEN_CACHE_MAX_ACCOUNTS', 100_000, [0, 10_000_000], problems);
  const databasePoolSize = readInteger(read, 'DATABASE_POOL_SIZE', 10, [1, 1_000], problems);
  const auditRetentionDays = readInteger(read, 'AUDIT_RETENTION_DAYS', 90, [1, 36_500], problems);
  const shutdown = {
    drainMs: readInteger(read, 'SHUTDOWN_DRAIN_MS', 5_000, [0, 300_000], problems),
    timeoutMs: readInteger(read, 'SHUTDOWN_TIMEOUT_MS', 20_000, [1_000, 600_000], problems),
  };

  const webhooks = readWebhookSettings(read, webhookUrls, secrets.WEBHOOK_SECRET, production, problems);

  if (problems.length > 0) throw new ConfigError(problems);

  const config = new AppConfig({
    nodeEnv,
    port,
    host: scalars.HOST ?? '0.0.0.0',
    databaseUrl: scalars.DATABASE_URL,
    databasePoolSize,
    dataDir,
    publicUrl: (scalars.PUBLIC_URL ?? `http://localhost:${port}`).replace(/\/+$/, ''),
    logLevel: scalars.LOG_LEVEL ?? (nodeEnv === 'test' ? 'warn' : 'info'),
    tokenEncryptionKeys: keyRing as string,
    serviceApiKeys,
    adminApiKeys,
    connectReturnOrigins,
    providers,
    providerApis,
    refresh,
    tokenCacheMaxAccounts,
    serviceGrants,
    auditRetentionDays,
    shutdown,
    webhooks,
  });
  return { config, notices };
}

function resolveSecrets(
  read: (name: string) => string | undefined,
  webhooksConfigured: boolean,
  production: boolean,
  dataDir: string,
  problems: string[],
  notices: string[],
): Partial<Record<GeneratedSecretVariable, string>> {
  const values: Partial<Record<GeneratedSecretVariable, string>> = {};
  const missing: GeneratedSecretVariable[] = [];
  const needed: GeneratedSecretVariable[] = [...GENERATED_SECRET_VARIABLES];
  // Events are recorded either way; a secret is needed only to sign what is sent.
  if (webhooksConfigured) needed.push('WEBHOOK_SECRET');
  for (const variable of needed) {
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
    const callerKeys = missing.filter((v) => v === 'SERVICE_API_KEYS' || v === 'ADMIN_API_KEYS');
    if (callerKeys.length > 0) {
      notices.push(`${callerKeys.join(' and ')} for this machine are in ${file.path}; send them as "Authorization: Bearer <secret>".`);
    }
    if (missing.includes('WEBHOOK_SECRET')) {
      notices.push(`WEBHOOK_SECRET for this machine is in ${file.path}; webhook receivers verify signatures with it.`);
    }
    if (missing.includes('TOKEN_ENCRYPTION_KEYS')) {
      notices.push(`TOKEN_ENCRYPTION_KEYS is read from ${file.path}: losing that file makes stored tokens unreadable. Set it explicitly outside development.`);
    }
  } catch (error) {
    problems.push(`DATA_DIR: cannot keep development secrets in ${file.path}: ${(error as Error).message}`);
  }
  return values;
}

/**
 * SERVICE_GRANTS: required in production, where access is stated, never assumed (`*=*\/*` says
 * allow-all explicitly). Unset elsewhere, every service key may do everything, with a warning.
 */
function readServiceGrants(
  spec: string | undefined,
  serviceKeyNames: ReadonlyArray<string>,
  production: boolean,
  problems: string[],
  notices: string[],
): ReadonlyArray<ServiceGrant> | null {
  if (spec !== undefined) return parseServiceGrants(spec, serviceKeyNames, problems);
  if (production) {
    problems.push('SERVICE_GRANTS: required in production (what each service key may read, e.g. billing=<provider>/*; *=*/* allows every key everything)');
  } else {
    notices.push('SERVICE_GRANTS is unset: every service key may read every token and open connect sessions for any account; set it to limit each service (see README, "Service grants").');
  }
  return null;
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
  production: boolean,
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
    if (production && isPlainHttpBeyondLoopback(value)) {
      problems.push(`${variable}: ${HTTPS_IN_PRODUCTION}`);
      continue;
    }
    endpoints[key] = value.replace(/\/+$/, '');
  }

  return {
    id: definition.id,
    clientId,
    clientSecret: clientSecret ?? '',
    endpoints: endpoints as ProviderSettings['endpoints'],
    scope: read(`${prefix}_SCOPE`) ?? definition.defaultScope,
    usePkce: readBoolean(read, `${prefix}_USE_PKCE`, definition.pkceByDefault, problems),
    clientAuth: readClientAuth(read, `${prefix}_CLIENT_AUTH`, definition.defaultClientAuth, problems),
    authorizeParams: readAuthorizeParams(read, prefix, problems),
    issuer: readIssuer(read, `${prefix}_ISSUER`, production, problems),
  };
}

/**
 * Where a provider's API is, whether or not its OAuth client is configured: an API key needs no
 * client. An enabled provider's URL was read and checked with its settings already.
 */
function readProviderApi(
  definition: ProviderDefinition,
  settings: ProviderSettings | undefined,
  read: (name: string) => string | undefined,
  production: boolean,
  problems: string[],
): ProviderApi {
  const variable = `${definition.envPrefix}_${ENDPOINT_VARIABLES.apiUrl}`;
  let apiUrl: string | null = settings?.endpoints.apiUrl ?? null;
  const given = read(variable) ?? definition.defaultEndpoints.apiUrl;
  if (!settings && given !== undefined) {
    if (!isHttpUrl(given)) problems.push(`${variable}: must be an http(s) URL (got "${given}")`);
    else if (production && isPlainHttpBeyondLoopback(given)) problems.push(`${variable}: ${HTTPS_IN_PRODUCTION}`);
    else apiUrl = given.replace(/\/+$/, '');
  }
  let derivedTokenUrl: string | null = null;
  if (definition.derivedToken) {
    const name = `${definition.envPrefix}_${definition.derivedToken.urlVariable}`;
    const url = read(name) ?? definition.derivedToken.defaultUrl;
    if (!isHttpUrl(url)) problems.push(`${name}: must be an http(s) URL (got "${url}")`);
    else if (production && isPlainHttpBeyondLoopback(url)) problems.push(`${name}: ${HTTPS_IN_PRODUCTION}`);
    else derivedTokenUrl = url.replace(/\/+$/, '');
  }
  return { id: definition.id, apiUrl, derivedTokenUrl };
}

function readClientAuth(read: (name: string) => string | undefined, name: string, fallback: ClientAuthMethod, problems: string[]): ClientAuthMethod {
  const raw = read(name);
  if (raw === undefined) return fallback;
  const method = CLIENT_AUTH_METHODS.find((m) => m === raw);
  if (method) return method;
  problems.push(`${name}: must be client_secret_post or client_secret_basic (got "${raw}")`);
  return 'client_secret_post';
}

/**
 * `<PREFIX>_AUTHORIZE_PARAMS`: `name=value&...`, form-urlencoded. Stricter than URLSearchParams,
 * which accepts anything: an empty pair, a pair without `=`, a bad escape or a repeated name is
 * more likely a typo than an intent, so each is a problem (reported once per variable). Every
 * reserved name is reported on its own.
 */
function readAuthorizeParams(read: (name: string) => string | undefined, prefix: string, problems: string[]): Record<string, string> {
  const name = `${prefix}_AUTHORIZE_PARAMS`;
  const raw = read(name);
  const params: Record<string, string> = {};
  if (raw === undefined) return params;
  const decode = (s: string): string | undefined => {
    try {
      return decodeURIComponent(s.replace(/\+/g, ' '));
    } catch {
      return undefined;
    }
  };
  let malformed: string | undefined;
  for (const pair of raw.split('&')) {
    const eq = pair.indexOf('=');
    const key = eq > 0 ? decode(pair.slice(0, eq)) : undefined;
    const value = eq > 0 ? decode(pair.slice(eq + 1)) : undefined;
    if (key === undefined || value === undefined || key.trim() === '') {
      malformed ??= `expected name=value pairs joined by &, URL-encoded (e.g. prompt=consent&access_type=offline); "${pair}" is not one`;
    } else if (RESERVED_AUTHORIZE_PARAMS.includes(key)) {
      const why = key === 'scope' ? `: set the scope with ${prefix}_SCOPE` : ': the broker sends it itself';
      problems.push(`${name}: may not set "${key}"${why}`);
    } else if (Object.hasOwn(params, key)) {
      malformed ??= `"${key}" is given twice`;
    } else {
      params[key] = value;
    }
  }
  if (malformed !== undefined) problems.push(`${name}: ${malformed}`);
  return params;
}

/**
 * `<PREFIX>_ISSUER` (RFC 9207): kept exactly as given, trailing slash and all, because the `iss`
 * of a callback is compared with it character for character (RFC 9207 section 2.4). An issuer
 * identifier has no query or fragment (RFC 8414 section 2).
 */
function readIssuer(read: (name: string) => string | undefined, name: string, production: boolean, problems: string[]): string | null {
  const raw = read(name);
  if (raw === undefined) return null;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    problems.push(`${name}: must be an https URL (got "${raw}")`);
    return null;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    problems.push(`${name}: must be an https URL (got "${raw}")`);
  } else if (url.search !== '' || url.hash !== '' || raw.includes('?') || raw.includes('#')) {
    problems.push(`${name}: an issuer has no query or fragment (got "${raw}")`);
  } else if (production && isPlainHttpBeyondLoopback(raw)) {
    problems.push(`${name}: ${HTTPS_IN_PRODUCTION}`);
  } else {
    return raw;
  }
  return null;
}

function isHttpUrl(value: string): boolean {
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:';
  } catch {
    return false;
  }
}


function readBoolean(read: (name: string) => string | undefined, name: string, fallback: boolean, problems: string[]): boolean {
  const raw = read(name);
  if (raw === undefined) return fallback;
  if (raw === 'true' || raw === 'false') return raw === 'true';
  problems.push(`${name}: must be true or false (got "${raw}")`);
  return fallback;
}
