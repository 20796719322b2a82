import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * A request's id: the caller's `X-Request-Id` when it is a safe token of up to 64 characters,
 * else a new UUID. Fastify's `genReqId` (broker.ts) and the token read's cached lane
 * (token-read.route.ts) both take it from here, so every answer carries one made the same way.
 */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers['x-request-id'];
  return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
}
