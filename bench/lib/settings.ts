/** Benchmark settings from BENCH_* environment variables (documented in bench/README.md). */
import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ROOT } from './bench-environment';
import { SeedMode } from './seed-connections';

export interface Settings {
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
  databaseUrl?: string;
  build: boolean;
  brokerDist: string;
  brokerNodeFlags: string[];
  resultsDir: string;
  writeReadme: boolean;
  /** Keep the servers up after seeding (for profiling by hand) until Ctrl-C; no load is run. */
  hold: boolean;
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
  const settings: Settings = {
    storedConnections,
    hotAccounts: Math.min(storedConnections, int('BENCH_HOT_ACCOUNTS', 10_000, 1, 1_000_000)),
    sampleAccounts: Math.min(storedConnections, int('BENCH_SAMPLE_ACCOUNTS', 5_000, 1, 1_000_000)),
    connections: int('BENCH_CONCURRENCY', 32, 1, 1_000),
    durationSec: int('BENCH_DURATION_SEC', 10, 1, 600),
    warmupSec: int('BENCH_WARMUP_SEC', 3, 0, 60),
    rounds: int('BENCH_ROUNDS', 3, 1, 20),
    seedMode,
    databaseUrl: env.BENCH_DATABASE_URL || undefined,
    build: env.BENCH_SKIP_BUILD !== '1' && !env.BENCH_BROKER_DIST,
    brokerDist: resolve(ROOT, env.BENCH_BROKER_DIST ?? 'dist'),
    brokerNodeFlags: (env.BENCH_BROKER_NODE_FLAGS ?? '').split(' ').filter((flag) => flag !== ''),
    resultsDir: resolve(ROOT, env.BENCH_RESULTS_DIR ?? 'bench/results'),
    writeReadme: env.BENCH_README !== '0',
    hold: env.BENCH_HOLD === '1',
  };
  if (env.BENCH_PROFILE === '1') {
    const dir = join(ROOT, '.data', 'bench-profiles');
    mkdirSync(dir, { recursive: true });
    settings.brokerNodeFlags.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  if (problems.length > 0) throw new Error(`bench settings:\n  - ${problems.join('\n  - ')}`);
  return settings;
}
