/**
 * token-broker entry point: read the environment (every problem reported at once), start
 * the broker, and shut down cleanly on SIGTERM (Kubernetes, docker stop: drained first) or
 * SIGINT (Ctrl-C: no drain).
 */
import './heap-tuning';
import 'reflect-metadata';
import { ConfigError, loadConfig } from '@app/config';
import { BrokerLogger, createPino } from '@app/observability';
import { Logger } from '@nestjs/common';
import { startBroker } from './broker';

async function main(): Promise<void> {
  let loaded;
  try {
    loaded = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`token-broker cannot start.\n${error.message}`);
      process.exit(78); // EX_CONFIG
    }
    throw error;
  }
  const { config, notices } = loaded;
  // A person at a terminal gets readable lines; anything reading stdout otherwise (a log
  // collector, a pipe) gets JSON, and production always does.
  const pretty = process.stdout.isTTY === true && !config.isProduction;
  const brokerLogger = new BrokerLogger(createPino(config.logLevel, undefined, { pretty }));
  Logger.overrideLogger(brokerLogger);
  const logger = new Logger('Broker');
  for (const notice of notices) logger.warn(notice);

  const broker = await startBroker(config, { logger: brokerLogger });
  logger.log(`token-broker listening on ${broker.url} (public URL ${config.publicUrl}); API docs at ${broker.url}/docs`);

  let stopping = false;
  const stop = (signal: NodeJS.Signals): void => {
    if (stopping) {
      // Asked again: stop waiting for load balancers and finish what is in flight.
      broker.skipDrain();
      return;
    }
    stopping = true;
    // SIGTERM comes from an orchestrator whose endpoints may still route here, so it drains;
    // SIGINT is a person at a terminal (Ctrl-C), who has no load balancer to wait for.
    const drain = signal === 'SIGTERM';
    logger.log(`${signal} received: shutting down${drain ? ` after a ${config.shutdown.drainMs} ms drain` : ''}`);
    broker.shutdown({ drain }).then(
      () => {
        logger.log('shut down cleanly');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error(`shutdown failed: ${(error as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((error: unknown) => {
  console.error(`token-broker failed to start: ${(error as Error).stack ?? String(error)}`);
  process.exit(1);
});
