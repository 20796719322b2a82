/**
 * One load run with autocannon: `connections` keep-alive connections, each cycling through its
 * own slice of accounts, for a fixed duration. Latencies are also kept at full precision
 * here (autocannon's histogram rounds to whole milliseconds) for the percentiles we report.
 */
import { createRequire } from 'node:module';
import { cpuSecondsOf, machineBusySeconds, round, treeCpuSecondsOf } from './process-stats';

// autocannon ships no types; this is the part of its API the benchmark uses.
interface AutocannonRequest {
  method: 'GET';
  path: string;
}
interface AutocannonClient {
  setRequests(requests: AutocannonRequest[]): void;
}
interface AutocannonOptions {
  url: string;
  connections: number;
  duration: number;
  headers?: Record<string, string>;
  requests?: AutocannonRequest[];
  setupClient?: (client: AutocannonClient) => void;
  timeout?: number;
}
interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  duration: number;
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodeStats?: Record<string, { count: number }>;
}
interface AutocannonInstance {
  on(event: 'response', listener: (client: unknown, statusCode: number, resBytes: number, responseTime: number) => void): void;
}
type Autocannon = (options: AutocannonOptions, callback: (error: Error | null, result: AutocannonResult) => void) => AutocannonInstance;

const autocannon = createRequire(__filename)('autocannon') as Autocannon;

export interface LoadTarget {
  name: string;
  url: string;
  headers?: Record<string, string>;
}

export interface LoadResult {
  target: string;
  durationSec: number;
  requests: number;
  reqPerSec: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  statusCodes: Record<string, number>;
  /**
   * CPU seconds per wall second: of the server under test, of this (load-generating) process, of
   * the embedded PostgreSQL (all its processes), and of everything else on the machine (the
   * kernel's share, other people's jobs: a high value means the round was disturbed).
   */
  cpu: { server?: number; loadGenerator: number; database?: number; other?: number };
}

export interface LoadOptions {
  connections: number;
  durationSec: number;
  /** One list of accounts per connection, which it cycles through (disjoint slices of the hot set). */
  accountSlices: ReadonlyArray<readonly string[]>;
  /** Measure the CPU of this process (the server) during the run. */
  serverPid?: number;
  /** Measure the CPU of this process tree (the embedded postmaster) during the run. */
  databasePid?: number;
  /** Appended to every request path (`?provider=copernica&api=v4` for the v4 reads); empty by default. */
  query?: string;
}

export async function runLoad(target: LoadTarget, options: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  const serverCpuBefore = options.serverPid ? cpuSecondsOf(options.serverPid) : undefined;
  const ownCpuBefore = process.cpuUsage();
  const machineBefore = machineBusySeconds();
  const databaseBefore = options.databasePid ? treeCpuSecondsOf(options.databasePid) : undefined;
  const started = process.hrtime.bigint();
  let clients = 0;

  const result = await new Promise<AutocannonResult>((resolve, reject) => {
    const instance = autocannon(
      {
        url: target.url,
        connections: options.connections,
        duration: options.durationSec,
        headers: target.headers,
        timeout: 10,
        setupClient: (client) => client.setRequests(requestsFor(options.accountSlices[clients++ % options.accountSlices.length], options.query ?? '')),
      },
      (error, outcome) => (error ? reject(error) : resolve(outcome)),
    );
    instance.on('response', (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
    });
  });

  const wallSec = Number(process.hrtime.bigint() - started) / 1e9;
  const ownCpu = process.cpuUsage(ownCpuBefore);
  const serverCpuAfter = options.serverPid ? cpuSecondsOf(options.serverPid) : undefined;
  const machineAfter = machineBusySeconds();
  const databaseAfter = options.databasePid ? treeCpuSecondsOf(options.databasePid) : undefined;
  const databaseCpu = databaseBefore !== undefined && databaseAfter !== undefined ? (databaseAfter - databaseBefore) / wallSec : undefined;
  const serverCpu = serverCpuBefore !== undefined && serverCpuAfter !== undefined ? (serverCpuAfter - serverCpuBefore) / wallSec : undefined;
  const ownCpuPerSec = (ownCpu.user + ownCpu.system) / 1e6 / wallSec;
  const machineCpu = machineBefore !== undefined && machineAfter !== undefined ? (machineAfter - machineBefore) / wallSec : undefined;
  const sorted = Float64Array.from(latencies).sort();
  const statusCodes: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) statusCodes[code] = count;

  return {
    target: target.name,
    durationSec: result.duration,
    requests: result.requests.total,
    reqPerSec: Math.round(result.requests.total / result.duration),
    latencyMs: {
      p50: percentile(sorted, 0.5),
      p90: percentile(sorted, 0.9),
      p99: percentile(sorted, 0.99),
      max: sorted.length > 0 ? round(sorted[sorted.length - 1], 2) : NaN,
    },
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    statusCodes,
    cpu: {
      server: serverCpu === undefined ? undefined : round(serverCpu, 2),
      loadGenerator: round(ownCpuPerSec, 2),
      database: databaseCpu === undefined ? undefined : round(databaseCpu, 2),
      other: machineCpu === undefined ? undefined : round(Math.max(0, machineCpu - ownCpuPerSec - (serverCpu ?? 0) - (databaseCpu ?? 0)), 2),
    },
  };
}

function requestsFor(accounts: readonly string[], query: string): AutocannonRequest[] {
  return accounts.map((account) => ({ method: 'GET', path: `/tokens/${encodeURIComponent(account)}${query}` }));
}

/** The q-quantile of ascending `sorted` (nearest rank), rounded to `digits` decimals; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, q: number, digits = 2): number {
  if (sorted.length === 0) return NaN;
  return round(sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)], digits);
}
