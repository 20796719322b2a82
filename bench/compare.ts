/**
 * Compares broker builds on one seeded database, in one run: what a proposed change to the read
 * path is worth, with machine drift cancelled out (every round runs raw, then each variant).
 *
 *   BENCH_VARIANTS="current=dist candidate=/path/to/other/dist open=dist;SERVICE_GRANTS=*=*\/*" npx ts-node -T -r tsconfig-paths/register bench/compare.ts
 *
 * Each variant is a compiled tree laid out like dist/ (e.g. a copy of dist/ with one change, or
 * another checkout's build). It must sit under this repository (e.g. .data/) so its requires
 * resolve to node_modules/. Same BENCH_* settings as run.ts; results go to
 * bench/results/compare-<timestamp>.json (README.md is not touched).
 */
import 'reflect-metadata';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { openEnvironment, readAll, ROOT, RunningServer, seed, shuffled, sliceAccounts, startBroker, startRawServer, verifyReads } from './lib/bench-environment';
import { memoryOf, round } from './lib/process-stats';
import { Cleanup } from './lib/cleanup';
import { LoadResult, runLoad } from './lib/load';
import { machineInfo, median } from './lib/report';
import { readSettings } from './lib/settings';

interface VariantFigures {
  name: string;
  dist: string;
  reqPerSec: number;
  ratio: number;
  p50Ms: number;
  p99Ms: number;
  failures: number;
  rssAfterMb?: number;
  rounds: LoadResult[];
}

/**
 * `name=dist-dir`, optionally followed by `;VARIABLE=value` pairs the variant's broker gets on top of
 * the benchmark's (e.g. `open=dist;SERVICE_GRANTS=*=*\/*`); entries separated by spaces (or commas,
 * when none has settings). `NODE_FLAGS` is not a variable but node flags for that variant's broker,
 * after npm start's, separated by commas (entries are separated by spaces), e.g.
 * `semi4=dist;NODE_FLAGS=--max-semi-space-size=4,--trace-gc`.
 */
function readVariants(spec: string | undefined): Array<{ name: string; dist: string; env: Record<string, string> }> {
  if (!spec) throw new Error('set BENCH_VARIANTS="name=dist-dir name=dist-dir;VAR=value ..." (e.g. current=dist candidate=.data/variants/x)');
  return spec
    .split(/\s+/)
    // Commas separate entries too, where no entry carries settings (whose values may hold commas).
    .flatMap((part) => (part.includes(';') ? [part] : part.split(',')))
    .filter((entry) => entry !== '')
    .map((entry) => {
      const [variant, ...settings] = entry.split(';');
      const [name, dist] = variant.split('=');
      if (!name || !dist || !/^[A-Za-z0-9_-]+$/.test(name)) throw new Error(`BENCH_VARIANTS entry "${entry}" is not name=dist-dir[;VAR=value...]`);
      const env: Record<string, string> = {};
      for (const setting of settings) {
        const eq = setting.indexOf('=');
        if (eq <= 0 || !/^[A-Z][A-Z0-9_]*$/.test(setting.slice(0, eq))) throw new Error(`BENCH_VARIANTS entry "${entry}": "${setting}" is not VAR=value`);
        env[setting.slice(0, eq)] = setting.slice(eq + 1);
      }
      return { name, dist: resolve(ROOT, dist), env };
    });
}

async function main(): Promise<void> {
  const settings = readSettings(process.env);
  const variants = readVariants(process.env.BENCH_VARIANTS);
  const cleanup = new Cleanup();
  cleanup.onSignals();
  const startedAt = new Date();
  const step = (message: string): void => console.log(`[${((Date.now() - startedAt.getTime()) / 1000).toFixed(1).padStart(5)}s] ${message}`);
  try {
    const env = await openEnvironment(cleanup, settings.databaseUrl);
    step(`storing ${settings.storedConnections.toLocaleString('en-US')} connections; starting ${variants.map((v) => v.name).join(', ')}`);
    const brokers: RunningServer[] = [];
    const readiness: Array<Promise<void>> = [];
    for (const variant of variants) {
      const { NODE_FLAGS: nodeFlags = '', ...variantEnv } = variant.env;
      const { server, ready } = await startBroker(cleanup, env, {
        name: variant.name,
        dist: variant.dist,
        // After npm start's flags, so that a variant's V8 flag (the last one given) wins.
        nodeFlags: [...settings.brokerNodeFlags, ...nodeFlags.split(',').filter((flag) => flag !== '')],
        env: variantEnv,
      });
      brokers.push(server);
      readiness.push(ready);
    }
    const [seeded] = await Promise.all([seed(env, settings.storedConnections, settings.seedMode), ...readiness]);
    const hot = shuffled(seeded).slice(0, settings.hotAccounts);
    let template = '';
    for (const broker of brokers) {
      template = await verifyReads(broker.target, seeded);
      await readAll(broker.target, hot, settings.connections);
    }
    const raw = await startRawServer(cleanup, env, template, seeded[0].account);
    const slices = sliceAccounts(hot, settings.connections);
    const load = (server: RunningServer, durationSec: number): Promise<LoadResult> =>
      runLoad(server.target, { connections: settings.connections, durationSec, accountSlices: slices, serverPid: server.child.pid, databasePid: env.database.pid() });

    if (settings.warmupSec > 0) {
      step(`warming up (${settings.warmupSec}s each)`);
      for (const server of [raw, ...brokers]) await load(server, settings.warmupSec);
    }
    const rawRounds: LoadResult[] = [];
    const results = new Map<string, LoadResult[]>(brokers.map((b) => [b.target.name, []]));
    const ratios = new Map<string, number[]>(brokers.map((b) => [b.target.name, []]));
    for (let i = 1; i <= settings.rounds; i++) {
      const rawResult = await load(raw, settings.durationSec);
      rawRounds.push(rawResult);
      const line = [`raw ${rawResult.reqPerSec}`];
      for (const broker of brokers) {
        const result = await load(broker, settings.durationSec);
        results.get(broker.target.name)!.push(result);
        ratios.get(broker.target.name)!.push(result.reqPerSec / rawResult.reqPerSec);
        line.push(`${broker.target.name} ${result.reqPerSec} (${(result.reqPerSec / rawResult.reqPerSec).toFixed(3)}, p99 ${result.latencyMs.p99} ms)`);
      }
      step(`round ${i}: ${line.join(' | ')}`);
    }

    const figures: VariantFigures[] = brokers.map((broker, i) => {
      const rounds = results.get(broker.target.name)!;
      return {
        name: broker.target.name,
        dist: variants[i].dist,
        reqPerSec: Math.round(median(rounds.map((r) => r.reqPerSec))),
        ratio: round(median(ratios.get(broker.target.name)!), 3),
        p50Ms: round(median(rounds.map((r) => r.latencyMs.p50)), 2),
        p99Ms: round(median(rounds.map((r) => r.latencyMs.p99)), 2),
        failures: rounds.reduce((n, r) => n + r.errors + r.timeouts + r.non2xx, 0),
        rssAfterMb: memoryOf(broker.child.pid)?.rssMb,
        rounds,
      };
    });
    const rawMedian = Math.round(median(rawRounds.map((r) => r.reqPerSec)));
    const base = figures[0];
    const table = [
      `Broker variants, ${settings.rounds} rounds of ${settings.durationSec} s at ${settings.connections} connections (medians); raw node:http ${rawMedian.toLocaleString('en-US')} req/s.`,
      '',
      `| variant | req/s | vs ${base.name} | broker / raw | p50 | p99 | errors | RSS |`,
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...figures.map(
        (f) =>
          `| ${f.name} | ${f.reqPerSec.toLocaleString('en-US')} | ${f === base ? '' : `${((f.reqPerSec / base.reqPerSec - 1) * 100).toFixed(0)} %`} | ${f.ratio.toFixed(3)} | ${f.p50Ms} ms | ${f.p99Ms} ms | ${f.failures} | ${f.rssAfterMb ?? 'n/a'} MB |`,
      ),
    ].join('\n');
    console.log(`\n${table}\n`);
    mkdirSync(settings.resultsDir, { recursive: true });
    const file = join(settings.resultsDir, `compare-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
    writeFileSync(file, `${JSON.stringify({ benchmark: 'token-read-compare', startedAt: startedAt.toISOString(), machine: machineInfo(), settings: { ...settings, databaseUrl: settings.databaseUrl ? '(BENCH_DATABASE_URL)' : undefined }, raw: rawRounds, variants: figures }, null, 2)}\n`);
    console.log(`results: ${file}`);
  } finally {
    step('cleaning up');
    await cleanup.runAll();
  }
}

main().then(
  () => process.exit(),
  (error: unknown) => {
    console.error(`bench compare failed: ${(error as Error).stack ?? String(error)}`);
    process.exit(1);
  },
);
