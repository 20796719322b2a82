/** Benchmark settings from BENCH_* environment variables (documented in bench/README.md). */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ROOT } from './bench-environment';
import { SeedKind, SeedMode } from '../../test/support/seed-connections';
import type { WebhookSettings } from './webhook-latency';

/** The refresh sweep phase (bench/lib/refresh-sweep.ts). */
export interface SweepSettings {
  /** Connections due at once. */
  count: number;
  /** Sandbox token-endpoint latency (Copy.ai). */
  latencyMs: number;
  /** The broker's REFRESH_CONCURRENCY (the `concurrency` of the ideal time). */
  concurrency: number;
  /** REFRESH_BATCH_SIZE. */
  batchSize: number;
  /** REFRESH_PROVIDER_BUDGET_PER_MINUTE: high, so the budget is not what limits the sweep. */
  budgetPerMinute: number;
  /** REFRESH_SWEEP_INTERVAL_MS. */
  intervalMs: number;
  /** Seeded access tokens expire after a random lifetime in this range (they are all made due at once). */
  tokenLifetimeSec: { minSec: number; maxSec: number };
  /** DATABASE_POOL_SIZE of the sweeping broker; undefined: the broker's default. */
  databasePoolSize?: number;
  /** Give up when nothing was refreshed for this long. */
  stallSec: number;
}

export interface Settings {
  /** Which phases `npm run bench` runs (BENCH_ONLY=read|sweep|webhooks; all by default). */
  phases: { read: boolean; sweep: boolean; webhooks: boolean };
  webhooks: WebhookSettings;
  sweep: SweepSettings;
  storedConnections: number;
  /** Accounts the load runs read (all cached beforehand). */
  hotAccounts: number;
  /** Accounts read before the memory figure is taken. */
  sampleAccounts: number;
  connections: number;
  durationSec: number;
  warmupSec: number;
  rounds: number;
  seedMode: SeedMode;
  /** What the read phase's connections hold (BENCH_READ_KIND): oauth (Copy.ai tokens), api_key (Copy.ai keys) or v4 (Copernica REST v4 JWTs, read with api=v4). */
  readKind: SeedKind;
  databaseUrl?: string;
  build: boolean;
  brokerDist: string;
  brokerNodeFlags: string[];
  resultsDir: string;
  /** Replace README.md's marked result blocks too (BENCH_README=1); off, so a run leaves the tracked README alone. */
  writeReadme: boolean;
  /** Keep the servers up after seeding (for profiling by hand) until Ctrl-C; no load is run. */
  hold: boolean;
  /** Also measure the same build with allow-all grants (`*=*\/*`) in every round (BENCH_WITHOUT_GRANTS=0: not). */
  compareWithoutGrants: boolean;
}

export function readSettings(env: NodeJS.ProcessEnv): Settings {
  const problems: string[] = [];
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) problems.push(`${name} must be a whole number from ${min} to ${max} (got "${raw}")`);
    return value;
  };
  const storedConnections = int('BENCH_CONNECTIONS', 10_000, 1, 1_000_000);
  const seedMode = (env.BENCH_SEED ?? 'bulk') as SeedMode;
  if (!['bulk', 'repository'].includes(seedMode)) problems.push(`BENCH_SEED must be bulk or repository (got "${seedMode}")`);
  const readKind = (env.BENCH_READ_KIND ?? 'oauth') as SeedKind;
  if (!['oauth', 'api_key', 'v4'].includes(readKind)) problems.push(`BENCH_READ_KIND must be oauth, api_key or v4 (got "${readKind}")`);
  if (readKind !== 'oauth' && seedMode !== 'bulk') problems.push('BENCH_READ_KIND other than oauth is seeded in bulk only (BENCH_SEED=bulk)');
  const only = env.BENCH_ONLY ?? '';
  if (!['', 'read', 'sweep', 'webhooks'].includes(only)) problems.push(`BENCH_ONLY must be read, sweep or webhooks (got "${only}")`);
  const lifetimeMinSec = int('BENCH_SWEEP_TOKEN_LIFETIME_MIN_SEC', 300, 60, 86_400);
  const settings: Settings = {
    phases: { read: only === '' || only === 'read', sweep: only === '' || only === 'sweep', webhooks: only === '' || only === 'webhooks' },
    webhooks: {
      events: int('BENCH_WEBHOOK_EVENTS', 1_000, 1, 100_000),
      replicas: int('BENCH_WEBHOOK_REPLICAS', 3, 1, 10),
      ratePerSec: int('BENCH_WEBHOOK_RATE', 100, 1, 10_000),
    },
    sweep: {
      count: int('BENCH_SWEEP_COUNT', 10_000, 1, 1_000_000),
      latencyMs: int('BENCH_SWEEP_LATENCY_MS', 50, 1, 10_000),
      concurrency: int('BENCH_SWEEP_CONCURRENCY', 20, 1, 1_000),
      batchSize: int('BENCH_SWEEP_BATCH_SIZE', 200, 1, 10_000),
      budgetPerMinute: int('BENCH_SWEEP_BUDGET_PER_MINUTE', 1_000_000, 1, 1_000_000),
      intervalMs: int('BENCH_SWEEP_INTERVAL_MS', 100, 100, 3_600_000),
      tokenLifetimeSec: { minSec: lifetimeMinSec, maxSec: Math.max(lifetimeMinSec, int('BENCH_SWEEP_TOKEN_LIFETIME_MAX_SEC', 600, 60, 86_400)) },
      databasePoolSize: env.BENCH_SWEEP_DATABASE_POOL_SIZE ? int('BENCH_SWEEP_DATABASE_POOL_SIZE', 10, 1, 250) : undefined,
      stallSec: int('BENCH_SWEEP_STALL_SEC', 20, 1, 600),
    },
    storedConnections,
    hotAccounts: Math.min(storedConnections, int('BENCH_HOT_ACCOUNTS', 10_000, 1, 1_000_000)),
    sampleAccounts: Math.min(storedConnections, int('BENCH_SAMPLE_ACCOUNTS', 5_000, 1, 1_000_000)),
    connections: int('BENCH_CONCURRENCY', 32, 1, 1_000),
    durationSec: int('BENCH_DURATION_SEC', 10, 1, 600),
    warmupSec: int('BENCH_WARMUP_SEC', 3, 0, 60),
    rounds: int('BENCH_ROUNDS', 3, 1, 20),
    seedMode,
    readKind,
    databaseUrl: env.BENCH_DATABASE_URL || undefined,
    build: env.BENCH_SKIP_BUILD !== '1' && !env.BENCH_BROKER_DIST,
    brokerDist: resolve(ROOT, env.BENCH_BROKER_DIST ?? 'dist'),
    brokerNodeFlags: (env.BENCH_BROKER_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== ''),
    resultsDir: resolve(ROOT, env.BENCH_RESULTS_DIR ?? 'bench/results'),
    writeReadme: env.BENCH_README === '1',
    hold: env.BENCH_HOLD === '1',
    compareWithoutGrants: env.BENCH_WITHOUT_GRANTS !== '0',
  };
  if (env.BENCH_PROFILE === '1') {
    const dir = join(ROOT, '.data', 'bench-profiles');
    mkdirSync(dir, { recursive: true });
    settings.brokerNodeFlags.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  if (problems.length > 0) throw new Error(`bench settings:\n  - ${problems.join('\n  - ')}`);
  return settings;
}
