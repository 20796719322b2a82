/**
 * `npm run bench`: three phases, each checking DESIGN targets (BENCH_ONLY=read, sweep or webhooks runs one).
 *
 * 1. Token read: "GET /tokens/:account for a valid cached token, with service grants and the
 *    read audit on: throughput ≥ 50 % of a raw node:http server answering the same JSON, measured
 *    in the same run on the same machine; p99 ≤ 10 ms at 32 connections", plus the memory target
 *    (< 200 MB RSS with 100,000 stored connections: BENCH_CONNECTIONS=100000). The same build with
 *    allow-all grants is measured in the same rounds (BENCH_WITHOUT_GRANTS=0 leaves it out).
 * 2. Refresh sweep (bench/lib/refresh-sweep.ts): "10,000 tokens due within the lead window
 *    against the sandbox provider with 50 ms token-endpoint latency finish within 1.3× of the
 *    ideal count × latency / concurrency, with zero tokens expiring unrefreshed and zero
 *    duplicate refreshes".
 * 3. Webhooks (bench/lib/webhook-latency.ts): "an event reaches a healthy receiver within 2 s (p99) of
 *    the change that caused it", 1,000 events with three replicas, each delivered exactly once.
 *
 * The broker (compiled dist/, as `npm start` runs it, NODE_ENV=production) and the raw baseline
 * each run in a child process; this process seeds the database, runs the sandbox and generates
 * the load. Both phases share one embedded PostgreSQL; each phase stops its own children before
 * the next starts. Everything it starts is stopped and every temp dir removed, on failure and
 * Ctrl-C too. Settings: BENCH_* environment variables, see bench/README.md.
 */
import 'reflect-metadata';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  BenchEnvironment,
  buildBroker,
  openEnvironment,
  readAll,
  ROOT,
  RunningServer,
  seed,
  shuffled,
  sliceAccounts,
  startBroker,
  startRawServer,
  verifyReads,
  WITHOUT_GRANTS,
} from './lib/bench-environment';
import { memoryOf, round } from './lib/process-stats';
import { Cleanup } from './lib/cleanup';
import { LoadResult, runLoad } from './lib/load';
import { runRefreshSweep } from './lib/refresh-sweep';
import { machineInfo, markdownTable, summarise, TARGET_P99_MS, TARGET_RATIO, TARGET_RSS_MB, TokenReadReport, writeReport } from './lib/report';
import { SeededConnection, seedReadQuery } from '../test/support/seed-connections';
import { readSettings, Settings } from './lib/settings';
import { sweepMarkdown, writeSweepReport } from './lib/sweep-report';
import { runWebhookLatency, webhookMarkdown, writeWebhookReport } from './lib/webhook-latency';

type Step = (message: string) => void;

async function main(): Promise<void> {
  const settings = readSettings(process.env);
  const cleanup = new Cleanup();
  cleanup.onSignals();
  const startedAt = new Date();
  const step: Step = (message) => console.log(`[${((Date.now() - startedAt.getTime()) / 1000).toFixed(1).padStart(5)}s] ${message}`);
  const readme = settings.writeReadme ? join(ROOT, 'README.md') : '';
  const missed: string[] = [];
  try {
    let buildSec: number | undefined;
    if (settings.build) {
      step('building the broker (npm run build)');
      const t = Date.now();
      buildBroker();
      buildSec = (Date.now() - t) / 1000;
    }
    step(settings.databaseUrl ? 'creating a database on BENCH_DATABASE_URL' : 'starting embedded PostgreSQL in a temp dir');
    const env = await openEnvironment(cleanup, settings.databaseUrl);

    if (settings.phases.read) {
      // The phase's children stop when it ends (and at the latest with everything else).
      const phase = new Cleanup();
      cleanup.add('stop the token read phase', () => phase.runAll());
      const report = await benchmark(settings, env, phase, startedAt, buildSec, step);
      await phase.runAll();
      const written = writeReport(report, settings.resultsDir, readme);
      console.log(`\n${markdownTable(report)}`);
      console.log(`results: ${written.json}\n         ${written.markdown}${written.readme ? '\n         README.md (token-read block updated)' : ''}\n`);
      missed.push(...Object.entries(report.verdict).filter(([, pass]) => pass === false).map(([name]) => `token read: ${name}`));
      if (!report.verdict.noFailures) process.exitCode = 1;
    }

    if (settings.phases.sweep) {
      const phase = new Cleanup();
      cleanup.add('stop the refresh sweep phase', () => phase.runAll());
      const report = await runRefreshSweep(settings, env, phase, step);
      await phase.runAll();
      const written = writeSweepReport(report, settings.resultsDir, readme);
      console.log(`\n${sweepMarkdown(report)}`);
      console.log(`results: ${written.json}\n         ${written.markdown}${written.readme ? '\n         README.md (refresh-sweep block updated)' : ''}\n`);
      missed.push(...Object.entries(report.verdict).filter(([, pass]) => !pass).map(([name]) => `refresh sweep: ${name}`));
      // Correctness (duplicates, tokens left unrefreshed, errors) fails the run; the time ratio is a target.
      if (!report.verdict.noDuplicates || !report.verdict.noneUnrefreshed || !report.verdict.noFailures) process.exitCode = 1;
    }
    if (settings.phases.webhooks) {
      const phase = new Cleanup();
      cleanup.add('stop the webhook phase', () => phase.runAll());
      const report = await runWebhookLatency(settings.webhooks, env, phase, settings.brokerDist, step);
      await phase.runAll();
      const written = writeWebhookReport(report, settings.resultsDir);
      console.log(`\n${webhookMarkdown(report)}`);
      console.log(`results: ${written.json}\n         ${written.markdown}\n`);
      missed.push(...Object.entries(report.verdict).filter(([, pass]) => !pass).map(([name]) => `webhooks: ${name}`));
      if (!report.verdict.exactlyOnce) process.exitCode = 1;
    }
    if (missed.length > 0) console.log(`targets missed: ${missed.join(', ')}`);
  } finally {
    step('cleaning up');
    await cleanup.runAll();
  }
}

async function benchmark(settings: Settings, env: BenchEnvironment, cleanup: Cleanup, startedAt: Date, buildSec: number | undefined, step: Step): Promise<TokenReadReport> {
  step(`token read: starting the broker and storing ${settings.storedConnections.toLocaleString('en-US')} ${settings.readKind} connections (${settings.seedMode})`);
  const query = seedReadQuery(settings.readKind);
  const t0 = Date.now();
  const { server: broker, ready } = await startBroker(cleanup, env, { name: 'broker', dist: settings.brokerDist, nodeFlags: settings.brokerNodeFlags });
  // The same build with allow-all grants, measured in the same rounds: what grants cost.
  const without = settings.compareWithoutGrants
    ? await startBroker(cleanup, env, { name: 'broker without grants', dist: settings.brokerDist, nodeFlags: settings.brokerNodeFlags, env: { SERVICE_GRANTS: WITHOUT_GRANTS } })
    : undefined;
  let seedSec = 0;
  let readySec = 0;
  const [seeded] = await Promise.all([
    seed(env, settings.storedConnections, settings.seedMode, undefined, settings.readKind).then((rows) => {
      seedSec = (Date.now() - t0) / 1000;
      return rows;
    }),
    ready.then(() => {
      readySec = (Date.now() - t0) / 1000;
    }),
    without?.ready,
  ]);
  step(`broker ready after ${readySec.toFixed(1)}s; connections stored after ${seedSec.toFixed(1)}s`);

  const template = await verifyReads(broker.target, seeded, query);
  const afterBootMb = memoryOf(broker.child.pid)?.rssMb;
  const raw = await startRawServer(cleanup, env, template, seeded[0].account);

  step(`reading ${settings.sampleAccounts.toLocaleString('en-US')} different accounts once`);
  await readAll(broker.target, shuffled(seeded).slice(0, settings.sampleAccounts), settings.connections, query);
  const afterSampleMb = memoryOf(broker.child.pid)?.rssMb;
  // The hot set is read once more so every measured read is a cache hit.
  const hot = shuffled(seeded).slice(0, settings.hotAccounts);
  await readAll(broker.target, hot, settings.connections, query);
  if (without) {
    await verifyReads(without.server.target, seeded, query);
    await readAll(without.server.target, hot, settings.connections, query);
  }
  if (settings.hold) await holdForProfiling(cleanup, env, broker, raw, hot);

  const slices = sliceAccounts(hot, settings.connections);
  const load = (server: RunningServer, durationSec: number): Promise<LoadResult> =>
    runLoad(server.target, { connections: settings.connections, durationSec, accountSlices: slices, serverPid: server.child.pid, databasePid: env.database.pid(), query });
  if (settings.warmupSec > 0) {
    step(`warming up (${settings.warmupSec}s each)`);
    await load(raw, settings.warmupSec);
    await load(broker, settings.warmupSec);
    if (without) await load(without.server, settings.warmupSec);
  }
  const rounds: TokenReadReport['rounds'] = [];
  for (let i = 1; i <= settings.rounds; i++) {
    const rawResult = await load(raw, settings.durationSec);
    step(`round ${i}: raw    ${rawResult.reqPerSec} req/s, p50 ${rawResult.latencyMs.p50} ms, p99 ${rawResult.latencyMs.p99} ms`);
    const brokerResult = await load(broker, settings.durationSec);
    const ratio = round(brokerResult.reqPerSec / rawResult.reqPerSec, 3);
    step(`round ${i}: broker ${brokerResult.reqPerSec} req/s, p50 ${brokerResult.latencyMs.p50} ms, p99 ${brokerResult.latencyMs.p99} ms (ratio ${ratio})`);
    let withoutGrants: TokenReadReport['rounds'][number]['withoutGrants'];
    if (without) {
      const result = await load(without.server, settings.durationSec);
      withoutGrants = { result, ratio: round(result.reqPerSec / rawResult.reqPerSec, 3) };
      step(`round ${i}: without grants ${result.reqPerSec} req/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms (ratio ${withoutGrants.ratio})`);
    }
    rounds.push({ raw: rawResult, broker: brokerResult, ratio, withoutGrants });
  }
  const afterRun = memoryOf(broker.child.pid);

  const summary = summarise(rounds);
  return {
    benchmark: 'token-read',
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: machineInfo(),
    settings: {
      storedConnections: settings.storedConnections,
      hotAccounts: hot.length,
      connections: settings.connections,
      durationSec: settings.durationSec,
      warmupSec: settings.warmupSec,
      rounds: settings.rounds,
      seedMode: settings.seedMode,
      readKind: settings.readKind,
      database: env.database.kind,
      broker: [...settings.brokerNodeFlags, settings.brokerDist.slice(ROOT.length + 1) || settings.brokerDist].join(' '),
      responseBytes: Buffer.byteLength(template),
    },
    timingsSec: { build: buildSec, seed: round(seedSec, 1), brokerReady: round(readySec, 1), total: round((Date.now() - startedAt.getTime()) / 1000, 1) },
    rounds,
    ...summary,
    brokerMemory: { afterBootMb, afterSampleMb, sampleAccounts: settings.sampleAccounts, afterRunMb: afterRun?.rssMb, peakMb: afterRun?.peakRssMb },
    verdict: {
      ratio: summary.median.ratio >= TARGET_RATIO,
      p99: summary.median.broker.p99Ms <= TARGET_P99_MS,
      noFailures: summary.failures.raw === 0 && summary.failures.broker === 0 && (summary.failures.withoutGrants ?? 0) === 0,
      memory: settings.storedConnections >= 100_000 && afterSampleMb !== undefined ? afterSampleMb < TARGET_RSS_MB : undefined,
      // DESIGN: the replica "stays under" the budget, so under load too: the process's high-water mark.
      memoryPeak: settings.storedConnections >= 100_000 && afterRun?.peakRssMb !== undefined ? afterRun.peakRssMb < TARGET_RSS_MB : undefined,
    },
  };
}

/** BENCH_HOLD=1: leave both servers up for perf/strace/autocannon by hand; details go to a 0600 file. */
async function holdForProfiling(cleanup: Cleanup, env: BenchEnvironment, broker: RunningServer, raw: RunningServer, hot: SeededConnection[]): Promise<never> {
  const file = join(ROOT, '.data', 'bench-hold.env');
  writeFileSync(
    file,
    [
      `BROKER_URL=${broker.target.url}`,
      `BROKER_PID=${broker.child.pid}`,
      `RAW_URL=${raw.target.url}`,
      `RAW_PID=${raw.child.pid}`,
      `AUTH='${env.headers.authorization}'`,
      `ACCOUNTS='${hot
        .slice(0, 1_000)
        .map((c) => c.account)
        .join(' ')}'`,
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  cleanup.add(`remove ${file}`, () => rmSync(file, { force: true }));
  console.log(`holding: broker ${broker.target.url} (pid ${broker.child.pid}), raw ${raw.target.url} (pid ${raw.child.pid}); details in ${file}. Ctrl-C to stop.`);
  return new Promise<never>(() => undefined);
}

if (require.main === module) {
  main().then(
    // Keep-alive sockets of the load generator would otherwise hold the process open for seconds.
    () => process.exit(),
    (error: unknown) => {
      console.error(`bench failed: ${(error as Error).stack ?? String(error)}`);
      process.exit(1);
    },
  );
}
