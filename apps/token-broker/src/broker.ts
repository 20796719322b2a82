import { Clock } from '@app/common';
import { AppConfig } from '@app/config';
import type { EmbeddedPostgresServer } from '@app/development';
import { BrokerLogger, createPino, logsEveryTokenRead, requestLogHook } from '@app/observability';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import { DocumentBuilder, SwaggerModule } from '@nestjs/swagger';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { join } from 'node:path';
import { AppModule } from './app.module';
import { Drain } from './health/drain';
import { frameworkErrorBody } from './http/error.filter';
import { requestIdOf } from './http/request-id';
import { documentTokenRead, TokenReadRoute } from './tokens/token-read.route';

export interface RunningBroker {
  app: NestFastifyApplication;
  /** Where it listens, e.g. http://127.0.0.1:3000 */
  url: string;
  /** Whether the embedded PostgreSQL server was started for this broker. */
  embeddedDatabase: boolean;
  /**
   * Stops at once: requests in flight are answered, the sweep's refreshes finish and its leases
   * go back, pending usage and audit records are written (Nest's shutdown hooks), then the
   * embedded database stops.
   */
  close(): Promise<void>;
  /**
   * The shutdown SIGTERM asks for: readiness answers 503 at once while the listener keeps
   * answering for SHUTDOWN_DRAIN_MS (endpoints and load balancers take the replica out
   * meanwhile), then close(). Rejects with ShutdownTimeoutError when close() takes longer than
   * SHUTDOWN_TIMEOUT_MS. `drain: false` closes without the wait.
   */
  shutdown(options?: { drain?: boolean }): Promise<void>;
  /** Cuts a drain in progress short (a second signal); close() follows at once. */
  skipDrain(): void;
}

/** close() did not finish within SHUTDOWN_TIMEOUT_MS: something in flight still holds on. */
export class ShutdownTimeoutError extends Error {
  constructor(timeoutMs: number) {
    super(`requests or refreshes still in flight after SHUTDOWN_TIMEOUT_MS (${timeoutMs} ms); leases still held lapse on their own`);
    this.name = 'ShutdownTimeoutError';
  }
}

/**
 * Builds and starts the broker: the embedded database when DATABASE_URL is unset, then the
 * Nest application on Fastify. Used by main.ts and by the end-to-end tests alike.
 */
export async function startBroker(config: AppConfig, options: { port?: number; clock?: Clock; logger?: BrokerLogger } = {}): Promise<RunningBroker> {
  const logger = options.logger ?? new BrokerLogger(createPino(config.logLevel));
  let embedded: EmbeddedPostgresServer | undefined;
  let databaseUrl = config.databaseUrl;
  if (!databaseUrl) {
    // Loaded here and only here, so a production broker (DATABASE_URL always set) never loads
    // the development library with its process spawning and system-user creation.
    const { EmbeddedPostgresServer } = await import('@app/development');
    embedded = new EmbeddedPostgresServer({ dataDir: config.dataDir });
    databaseUrl = await embedded.start();
    logger.log(`embedded PostgreSQL running with data in ${join(config.dataDir, 'postgres')}`, 'Broker');
  }

  try {
    // Fastify's own logger stays off: its per-request child loggers cost more than the token
    // read they would describe. One onResponse hook writes the request log instead.
    const adapter = new FastifyAdapter({
      bodyLimit: 64 * 1024,
      // Fastify's default (100) would answer a valid 101-128 character account id with its own 414;
      // longer ids reach the handlers, which reject them in the broker's error format.
      routerOptions: { maxParamLength: 1024 },
      // No Nest middleware is used anywhere; without @fastify/middie no request pays for matching it.
      skipMiddie: true,
      frameworkErrors: (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
        const body = frameworkErrorBody(error);
        void reply.code(body.statusCode).header('content-type', 'application/json; charset=utf-8').send(body);
      },
      trustProxy: true,
      genReqId: requestIdOf,
    });
    const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot({ config, databaseUrl, clock: options.clock }), adapter, {
      logger,
      // Throw instead of exiting: main.ts and the tests decide what a failed start means.
      abortOnError: false,
    });
    // No global ValidationPipe: the one DTO body (POST /connect-sessions) declares its own, and
    // every other route parses its input by hand, so the token read pays for no pipe at all.
    // The request id goes back in a header, and the request log is written, from the hooks the
    // adapter always runs anyway: each hook of our own would cost every request a step more.
    const drain = app.get(Drain);
    adapter.setOnRequestHook((request, reply, done) => {
      void reply.header('x-request-id', request.id);
      // While draining, a keep-alive client's next request opens a connection to another replica.
      if (drain.active) void reply.header('connection', 'close');
      done();
    });
    adapter.setOnResponseHook(requestLogHook(logger.pino));
    // Cached token reads are answered ahead of Fastify (TokenReadRoute), except when the request
    // log is to carry a line for each (debug), which only Fastify's onResponse hook writes.
    if (!logsEveryTokenRead(logger.pino)) app.get(TokenReadRoute).putLaneInFront(app.getHttpServer());

    const document = SwaggerModule.createDocument(
      app,
      new DocumentBuilder()
        .setTitle('token-broker')
        .setDescription('OAuth 2.0 token broker for Copper, Copernica and Copy.ai')
        .addBearerAuth({ type: 'http', scheme: 'bearer', description: 'a service or admin API key' })
        .build(),
    );
    documentTokenRead(document);
    SwaggerModule.setup('docs', app, document);

    await app.listen(options.port ?? config.port, config.host);
    const address = app.getHttpServer().address();
    const port = typeof address === 'object' && address ? address.port : config.port;
    const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
    const url = `http://${host}:${port}`;

    const close = async (): Promise<void> => {
      await app.close();
      await embedded?.stop();
    };
    let endDrain = (): void => undefined;
    const shutdown = async ({ drain: draining = true }: { drain?: boolean } = {}): Promise<void> => {
      drain.begin();
      const { drainMs, timeoutMs } = config.shutdown;
      if (draining && drainMs > 0) {
        logger.log(`draining: readiness answers 503, requests are still served for ${drainMs} ms`, 'Shutdown');
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, drainMs);
          endDrain = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
      logger.log('closing: finishing the requests and refreshes in flight', 'Shutdown');
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      const outcome = await Promise.race([close().then(() => 'closed' as const), timedOut]).finally(() => clearTimeout(timer));
      if (outcome === 'timeout') throw new ShutdownTimeoutError(timeoutMs);
    };

    return {
      app,
      url,
      embeddedDatabase: embedded !== undefined,
      close,
      shutdown,
      skipDrain: () => endDrain(),
    };
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
}
