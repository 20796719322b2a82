import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Level, Logger as Pino } from 'pino';

/** Probes and scrapes: logged only when they fail. */
const QUIET_PATHS = /^\/(health\/|metrics)/;

/**
 * One line per answered request, written by a Fastify `onResponse` hook: request id, method,
 * path (never the query string: it may carry a connect session or an OAuth code), status and
 * time. Successful token reads log at debug: at thousands a second an info line each would cost
 * more than the read itself. 4xx answers log at warn, 5xx at error.
 */
export function requestLogHook(logger: Pino): (request: FastifyRequest, reply: FastifyReply, done: () => void) => void {
  return (request, reply, done) => {
    const level = levelFor(request, reply.statusCode);
    if (level && logger.isLevelEnabled(level)) {
      const path = request.url.split('?', 1)[0];
      logger[level](
        { reqId: request.id, method: request.method, path, statusCode: reply.statusCode, responseTimeMs: Math.round(reply.elapsedTime * 10) / 10 },
        'request completed',
      );
    }
    done();
  };
}

/** Whether the request log writes a line for each successful token read (LOG_LEVEL debug or trace). */
export function logsEveryTokenRead(logger: Pino): boolean {
  return logger.isLevelEnabled(TOKEN_READ_LEVEL);
}

const TOKEN_READ_LEVEL: Level = 'debug';

function levelFor(request: FastifyRequest, status: number): Level | undefined {
  if (status >= 500) return 'error';
  if (status >= 400) return 'warn';
  if (QUIET_PATHS.test(request.url)) return undefined;
  return request.method === 'GET' && request.url.startsWith('/tokens/') ? TOKEN_READ_LEVEL : 'info';
}
