/**
 * What every token-read measurement needs: a migrated database holding N sealed connections,
 * the provider sandbox, one key ring and service key, and ways to start brokers (compiled
 * dist/ trees, NODE_ENV=production) and the raw baseline as child processes.
 */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { BenchDatabase, migrate, openBenchDatabase } from './bench-database';
import { ChildServer, spawnChild, waitForOk } from '../../test/support/child-process';
import { Cleanup } from './cleanup';
import { LoadTarget } from './load';
import { SeededConnection, seedConnections, SeedKind, SeedMode, SeedOptions } from '../../test/support/seed-connections';

export const ROOT = resolve(__dirname, '..', '..');

export interface RunningServer {
  child: ChildServer;
  target: LoadTarget;
}

/**
 * The service keys and grants a benchmarked broker runs with, as an operator would configure a
 * few services: the benchmark's key (`bench`) reads Copy.ai for the seeded accounts' prefix and
 * Copper for any account, so every read it makes passes a prefix match; two more keys have grants
 * of their own. WITHOUT_GRANTS says allow-all explicitly, for the same run without them.
 */
export const BENCH_GRANTS = 'bench=copyai/bench-user-*,bench=copernica/bench-user-*,bench=copper/*,reporting=*/*,billing=copernica/acme-*,billing=copyai/acme-*';
export const WITHOUT_GRANTS = '*=*/*';

export interface BenchEnvironment {
  database: BenchDatabase;
  sandbox: ProviderSandbox;
  keyRingSpec: string;
  serviceKey: string;
  /** Authorization header every request carries (the raw server gets it too: same request bytes). */
  headers: Record<string, string>;
}

export async function openEnvironment(cleanup: Cleanup, databaseUrl: string | undefined): Promise<BenchEnvironment> {
  const sandbox = await startProviderSandbox();
  cleanup.add('close provider sandbox', () => sandbox.close());
  const database = await openBenchDatabase(cleanup, databaseUrl);
  await migrate(database.url);
  const serviceKey = `bench-svc-${randomBytes(24).toString('base64url')}`;
  return {
    database,
    sandbox,
    keyRingSpec: `bench:${randomBytes(32).toString('base64')}`,
    serviceKey,
    headers: { authorization: `Bearer ${serviceKey}` },
  };
}

/** N Copy.ai connections; by default with tokens valid for 6 h, so no read during a run needs a refresh. */
export function seed(
  env: BenchEnvironment,
  count: number,
  mode: SeedMode,
  tokenLifetimeSec: SeedOptions['tokenLifetimeSec'] = 6 * 3600,
  kind: SeedKind = 'oauth',
): Promise<SeededConnection[]> {
  return seedConnections({ url: env.database.url, keyRingSpec: env.keyRingSpec, count, sandbox: env.sandbox, mode, tokenLifetimeSec, kind });
}

/** The path of the broker entry point inside a compiled tree. */
export function brokerMain(dist: string): string {
  const main = join(dist, 'apps/token-broker/src/main.js');
  if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build (or unset BENCH_SKIP_BUILD)`);
  return main;
}

/** The node flags `npm start` passes (package.json scripts.start), so the bench runs the broker exactly as users do. */
export function startScriptNodeFlags(): string[] {
  const { scripts } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const flags = / node((?: --[\w-]+(?:=\S+)?)*) -r /.exec(scripts.start)?.[1] ?? '';
  return flags.split(' ').filter((flag) => flag !== '');
}

/**
 * Starts `node <npm start's flags> -r tsconfig-paths/register <dist>/apps/token-broker/src/main.js`, as `npm start` does. Resolves once it is listening.
 * By default the refresh scheduler is off, LOG_LEVEL is warn and the service grants are BENCH_GRANTS; `env` overrides any variable.
 */
export async function startBroker(
  cleanup: Cleanup,
  env: BenchEnvironment,
  options: { name: string; dist: string; nodeFlags?: string[]; env?: Record<string, string> },
): Promise<{ server: RunningServer; ready: Promise<void> }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawnChild(options.name, process.execPath, [...startScriptNodeFlags(), ...(options.nodeFlags ?? []), '-r', 'tsconfig-paths/register', brokerMain(options.dist)], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      TS_NODE_BASEURL: options.dist,
      NODE_ENV: 'production',
      HOST: '127.0.0.1',
      PORT: String(port),
      PUBLIC_URL: url,
      CONNECT_RETURN_ORIGINS: 'http://localhost:*',
      DATABASE_URL: env.database.url,
      DATA_DIR: env.database.dataDir,
      TOKEN_ENCRYPTION_KEYS: env.keyRingSpec,
      SERVICE_API_KEYS: `bench:${env.serviceKey},reporting:rep-${randomBytes(24).toString('base64url')},billing:bil-${randomBytes(24).toString('base64url')}`,
      SERVICE_GRANTS: BENCH_GRANTS,
      ADMIN_API_KEYS: `bench-admin:adm-${randomBytes(24).toString('base64url')}`,
      LOG_LEVEL: 'warn',
      REFRESH_SCHEDULER_ENABLED: 'false',
      ...env.sandbox.env(),
      ...options.env,
    },
  });
  cleanup.add(`stop ${options.name}`, () => child.stop());
  return { server: { child, target: { name: options.name, url, headers: env.headers } }, ready: waitForOk(`${url}/health/ready`, child, 60_000) };
}

/** The baseline: bench/raw-server.ts answering `template` (a broker answer) with the account swapped in. */
export async function startRawServer(cleanup: Cleanup, env: BenchEnvironment, template: string, probeAccount: string): Promise<RunningServer> {
  const child = spawnChild('raw-server', process.execPath, ['-r', 'ts-node/register/transpile-only', join(ROOT, 'bench/raw-server.ts')], {
    cwd: ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: String(await freePort()), BENCH_RAW_TEMPLATE: template },
  });
  cleanup.add('stop raw server', () => child.stop());
  const url = `http://127.0.0.1:${await listeningPort(child)}`;
  await waitForOk(`${url}/tokens/${probeAccount}`, child, 30_000);
  return { child, target: { name: 'raw', url, headers: env.headers } };
}

/** Reads a few accounts through the broker, checks each answer carries the token that was stored, and returns one answer. */
export async function verifyReads(target: LoadTarget, seeded: SeededConnection[], query = ''): Promise<string> {
  let template = '';
  for (const connection of [seeded[0], ...shuffled(seeded).slice(0, 20)]) {
    const response = await fetch(`${target.url}/tokens/${encodeURIComponent(connection.account)}${query}`, { headers: target.headers });
    const text = await response.text();
    if (response.status !== 200) throw new Error(`${target.name}: GET /tokens/${connection.account} answered ${response.status}: ${text.slice(0, 300)}`);
    const body = JSON.parse(text) as { account?: string; accessToken?: string };
    if (body.account !== connection.account || body.accessToken !== connection.accessToken) {
      throw new Error(`${target.name}: GET /tokens/${connection.account} did not return the stored token: the seeding does not match what the broker reads`);
    }
    template ||= text;
  }
  return template;
}

/** Reads every given account once, `concurrency` at a time (so each is cached); any non-200 fails. */
export async function readAll(target: LoadTarget, connections: readonly SeededConnection[], concurrency: number, query = ''): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < connections.length) {
      const { account } = connections[next++];
      const response = await fetch(`${target.url}/tokens/${encodeURIComponent(account)}${query}`, { headers: target.headers });
      const text = await response.text();
      if (response.status !== 200) throw new Error(`${target.name}: GET /tokens/${account} answered ${response.status}: ${text.slice(0, 300)}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** Deals the hot accounts out to the load generator's connections: disjoint slices, one per connection. */
export function sliceAccounts(hot: readonly SeededConnection[], connections: number): string[][] {
  const slices: string[][] = Array.from({ length: connections }, () => []);
  hot.forEach((c, i) => slices[i % connections].push(c.account));
  return slices;
}

export function shuffled<T>(items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [copy[i], copy[j]] = [copy[j], copy[i]];
  }
  return copy;
}

async function listeningPort(child: ChildServer): Promise<string> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const match = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(child.output());
    if (match) return match[1];
    if (child.exited() || Date.now() > deadline) throw new Error(`${child.name} did not start:\n${child.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port'))));
    });
  });
}

/** `npm run build` (what `npm start` runs first). tsc still emits on type errors elsewhere in the tree: warn, go on. */
export function buildBroker(): void {
  const result = spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8' });
  if (result.status !== 0) {
    const lines = `${result.stdout}${result.stderr}`.trim().split('\n');
    const count = lines.filter((line) => line.includes('error TS')).length;
    console.warn(`warning: tsc reported ${count} error(s); benchmarking what it emitted:\n  ${lines.slice(0, 10).join('\n  ')}`);
  }
}
