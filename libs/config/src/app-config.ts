import type { ProviderApi, ProviderId, ProviderSettings } from '@app/providers';
import { inspect } from 'node:util';
import type { NamedSecret } from './named-secret';
import { formatServiceGrant, type ServiceGrant } from './service-grants';

/** REFRESH_*: how the refresh engine and the sweep behave (documented in the README). */
export interface RefreshSettings {
  /** Whether this replica runs the proactive sweep (all replicas may; claims never overlap). */
  readonly schedulerEnabled: boolean;
  readonly sweepIntervalMs: number;
  /** Connections claimed per sweep round. */
  readonly batchSize: number;
  /** Provider calls in flight at once, per provider, per replica. */
  readonly concurrency: number;
  /** Token-endpoint calls per minute, per provider, per replica (sweep only; reads are never throttled). */
  readonly providerBudgetPerMinute: number;
  /** How long a refresh lease holds before another replica may take over. */
  readonly leaseMs: number;
}

/** SHUTDOWN_*: what SIGTERM does (see the README, "Shutdown"). */
export interface ShutdownSettings {
  /** How long the listener keeps answering, readiness already 503, so load balancers stop sending traffic first. */
  readonly drainMs: number;
  /** How long requests and refreshes in flight may then take to finish before the process exits anyway. */
  readonly timeoutMs: number;
}

/** WEBHOOK_*: where lifecycle events go and how deliveries are retried (see the README, "Lifecycle events"). */
export interface WebhookSettings {
  /** WEBHOOK_URLS; empty: events are recorded but sent nowhere. */
  readonly urls: ReadonlyArray<string>;
  /**
   * WEBHOOK_SECRET, `whsec_...` values (several during a rotation: the first signs). Empty when
   * no URL is set.
   */
  readonly secrets: ReadonlyArray<string>;
  /** The first retry comes after about this long; each next one after twice as long, with jitter. */
  readonly retryBaseMs: number;
  /** No retry waits longer than this. */
  readonly retryMaxMs: number;
  /** Attempts (the first one included) before a delivery is given up. */
  readonly maxAttempts: number;
}

/** The plain values an AppConfig is built from. */
export type AppConfigValues = Omit<AppConfig, 'isProduction' | 'toJSON' | typeof inspect.custom>;

/** Fields holding a secret (or, for providers and the database URL, an object or URL carrying one). */
const SECRET_FIELDS: ReadonlyArray<keyof AppConfigValues> = ['databaseUrl', 'tokenEncryptionKeys', 'serviceApiKeys', 'adminApiKeys', 'providers', 'webhooks'];

/**
 * The broker's configuration, parsed and validated once at boot (see load-config.ts).
 * Secrets are here as values; this object is never logged whole.
 */
export class AppConfig {
  readonly nodeEnv!: 'development' | 'production' | 'test';
  readonly port!: number;
  readonly host!: string;
  /** Unset → embedded Postgres under dataDir. */
  readonly databaseUrl!: string | undefined;
  /** Connections this replica's pool holds at most (DATABASE_POOL_SIZE). */
  readonly databasePoolSize!: number;
  readonly dataDir!: string;
  readonly publicUrl!: string;
  readonly logLevel!: string;
  /** `kid:base64key,...`, parsed by the crypto library into the key ring. */
  readonly tokenEncryptionKeys!: string;
  readonly serviceApiKeys!: ReadonlyArray<NamedSecret>;
  readonly adminApiKeys!: ReadonlyArray<NamedSecret>;
  /** Origin patterns a connect `returnTo` may point at; `*` stands for any port in `http://localhost:*`. */
  readonly connectReturnOrigins!: ReadonlyArray<string>;
  readonly providers!: Readonly<Partial<Record<ProviderId, ProviderSettings>>>;
  /** Every provider's API, OAuth client configured or not: static credentials and derived tokens need only this. */
  readonly providerApis!: Readonly<Record<ProviderId, ProviderApi>>;
  readonly refresh!: RefreshSettings;
  /** Accounts whose connections the token read path keeps in memory (TOKEN_CACHE_MAX_ACCOUNTS); 0 turns the cache off. */
  readonly tokenCacheMaxAccounts!: number;
  /**
   * SERVICE_GRANTS: what each service key may read and connect. null when unset (outside
   * production only): every service key may do everything.
   */
  readonly serviceGrants!: ReadonlyArray<ServiceGrant> | null;
  /** AUDIT_RETENTION_DAYS: audit records older than this are pruned. */
  readonly auditRetentionDays!: number;
  readonly shutdown!: ShutdownSettings;
  readonly webhooks!: WebhookSettings;

  constructor(values: AppConfigValues) {
    Object.assign(this, values);
    // Non-enumerable: a spread, Object.entries() or a logger walking the object passes them by.
    for (const field of SECRET_FIELDS) Object.defineProperty(this, field, { enumerable: false });
  }

  get isProduction(): boolean {
    return this.nodeEnv === 'production';
  }

  /** What `console.log(config)` and `util.inspect(config)` print: the same harmless view as JSON. */
  [inspect.custom](): Record<string, unknown> {
    return this.toJSON();
  }

  /** Never print secrets: what `JSON.stringify(config)` or a logger would show. */
  toJSON(): Record<string, unknown> {
    return {
      nodeEnv: this.nodeEnv,
      port: this.port,
      host: this.host,
      database: this.databaseUrl ? 'external' : 'embedded',
      databasePoolSize: this.databasePoolSize,
      dataDir: this.dataDir,
      publicUrl: this.publicUrl,
      serviceApiKeys: this.serviceApiKeys.map((k) => k.name),
      adminApiKeys: this.adminApiKeys.map((k) => k.name),
      connectReturnOrigins: this.connectReturnOrigins,
      providers: Object.keys(this.providers),
      serviceGrants: this.serviceGrants === null ? 'unset: every service key may do everything' : this.serviceGrants.map(formatServiceGrant),
      auditRetentionDays: this.auditRetentionDays,
      shutdown: this.shutdown,
      webhooks: {
        urls: this.webhooks.urls.map((url) => new URL(url).origin),
        retryBaseMs: this.webhooks.retryBaseMs,
        retryMaxMs: this.webhooks.retryMaxMs,
        maxAttempts: this.webhooks.maxAttempts,
      },
    };
  }
}
