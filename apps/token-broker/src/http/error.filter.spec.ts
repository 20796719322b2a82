import { DomainError, ErrorCode } from '@app/common';
import {
  BadRequestException,
  ForbiddenException,
  HttpException,
  InternalServerErrorException,
  NotFoundException,
  PayloadTooLargeException,
  ServiceUnavailableException,
} from '@nestjs/common';
import fastify, { FastifyError, FastifyInstance, FastifyReply, FastifyRequest, LightMyRequestResponse } from 'fastify';
import { DATABASE_RETRY_AFTER_SEC, errorCodeOf, frameworkErrorBody, sendError } from './error.filter';

interface LogEntry {
  level: 'error' | 'warn';
  fields: Record<string, unknown>;
  message: unknown;
}

/** A secret as it might sit in an error's text: it must never reach an answer. */
const SECRET = 'sk_live_9f8e7d6c5b4a';

/** An error as `pg` raises it, with the fields the database check reads. */
function pgError(message: string, code?: string): Error {
  return Object.assign(new Error(message), code === undefined ? {} : { code });
}

describe('sendError', () => {
  let app: FastifyInstance;
  let thrown: unknown;
  const logged: LogEntry[] = [];
  const logger = {
    error: (fields: unknown, message?: unknown): void => {
      logged.push({ level: 'error', fields: fields as Record<string, unknown>, message });
    },
    warn: (fields: unknown, message?: unknown): void => {
      logged.push({ level: 'warn', fields: fields as Record<string, unknown>, message });
    },
  };
  let requests = 0;

  beforeAll(async () => {
    // As broker.ts configures it: errors Fastify raises before a route runs go to frameworkErrors.
    app = fastify({
      genReqId: () => `req-${++requests}`,
      bodyLimit: 64,
      routerOptions: { maxParamLength: 32 },
      frameworkErrors: (error: FastifyError, _request: FastifyRequest, reply: FastifyReply) => {
        const body = frameworkErrorBody(error);
        void reply.code(body.statusCode).header('content-type', 'application/json; charset=utf-8').send(body);
      },
    });
    app.setErrorHandler((error, request, reply) => sendError(error, request, reply, logger));
    app.get('/throw', async () => {
      throw thrown;
    });
    app.get('/items/:id', async (request) => request.params);
    app.get('/deep/*', async () => {
      throw thrown;
    });
    app.post('/echo', async (request) => request.body);
    await app.ready();
  });
  beforeEach(() => {
    logged.length = 0;
  });
  afterAll(() => app.close());

  async function answerTo(error: unknown, url = '/throw'): Promise<LightMyRequestResponse> {
    thrown = error;
    return app.inject({ url });
  }

  describe('domain errors', () => {
    it('answers with the status of the code, in the one error shape, and logs nothing', async () => {
      const response = await answerTo(new DomainError(ErrorCode.NeedsReauth, 'the copper connection of acme is needs_reauth'));
      expect(response.statusCode).toBe(409);
      expect(response.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(response.headers['retry-after']).toBeUndefined();
      expect(response.json()).toEqual({ statusCode: 409, error: 'needs_reauth', message: 'the copper connection of acme is needs_reauth' });
      expect(logged).toEqual([]);
    });

    it('adds its details to the body, but they cannot change the status, code or message', async () => {
      const response = await answerTo(
        new DomainError(ErrorCode.ProviderAmbiguous, 'say which with ?provider=', { providers: ['copper', 'copyai'], statusCode: 200, error: 'ok', message: 'fine' }),
      );
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({ statusCode: 400, error: 'provider_ambiguous', message: 'say which with ?provider=', providers: ['copper', 'copyai'] });
    });

    it('sends Retry-After when it says when to retry', async () => {
      const response = await answerTo(new DomainError(ErrorCode.ProviderUnavailable, 'copper could not refresh the token now', { retryAfter: 30 }));
      expect(response.statusCode).toBe(503);
      expect(response.headers['retry-after']).toBe('30');
      expect(response.json()).toEqual({ statusCode: 503, error: 'provider_unavailable', message: 'copper could not refresh the token now', retryAfter: 30 });
    });

    it('gives every 503 a Retry-After, the default when the error names none (or no usable one)', async () => {
      for (const details of [undefined, { retryAfter: 'soon' }]) {
        const response = await answerTo(new DomainError(ErrorCode.RefreshInProgress, 'busy', details));
        expect(response.statusCode).toBe(503);
        expect(response.headers['retry-after']).toBe('5');
      }
      expect((await answerTo(new DomainError(ErrorCode.NeedsReauth, 'reconnect'))).headers['retry-after']).toBeUndefined();
    });

    it('leaves a 5xx domain error to whoever raised it: it is a known outcome, not an unhandled error', async () => {
      const response = await answerTo(new DomainError(ErrorCode.TokenUnreadable, 'the stored token cannot be decrypted'));
      expect(response.statusCode).toBe(500);
      expect(response.json()).toEqual({ statusCode: 500, error: 'token_unreadable', message: 'the stored token cannot be decrypted' });
      expect(logged).toEqual([]);
    });
  });

  describe('Nest HTTP exceptions', () => {
    it('joins the messages of a validation failure into one', async () => {
      const response = await answerTo(new BadRequestException(['account must be a string', 'provider must be shorter than or equal to 32 characters']));
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({
        statusCode: 400,
        error: 'validation_failed',
        message: 'account must be a string; provider must be shorter than or equal to 32 characters',
      });
    });

    it.each([
      [new BadRequestException('returnTo must be a URL'), 400, 'validation_failed', 'returnTo must be a URL'],
      [new ForbiddenException('a service key never opens /admin'), 403, 'forbidden', 'a service key never opens /admin'],
      [new PayloadTooLargeException(), 413, 'payload_too_large', 'Payload Too Large'],
      [new HttpException('I am a teapot', 418), 418, 'validation_failed', 'I am a teapot'],
    ])('maps %p by its status', async (exception, status, code, message) => {
      const response = await answerTo(exception);
      expect(response.statusCode).toBe(status);
      expect(response.json()).toEqual({ statusCode: status, error: code, message });
      expect(logged).toEqual([]);
    });

    it('answers an unknown route with its path only, never its query string', async () => {
      const response = await answerTo(new NotFoundException('Cannot GET /throw'), `/throw?access_token=${SECRET}`);
      expect(response.statusCode).toBe(404);
      expect(response.json()).toEqual({ statusCode: 404, error: 'route_not_found', message: 'no route GET /throw' });
      expect(response.body).not.toContain(SECRET);
    });

    it('answers an unknown route with a long path cut short', async () => {
      const long = `/deep/${'x'.repeat(5_000)}`;
      const response = await answerTo(new NotFoundException('Cannot GET'), long);
      expect(response.statusCode).toBe(404);
      expect(response.json<{ message: string }>().message.length).toBeLessThan(250);
    });

    it.each([
      ['InternalServerErrorException', new InternalServerErrorException(`pool failed: password=${SECRET}`), 500],
      ['ServiceUnavailableException', new ServiceUnavailableException(`upstream said ${SECRET}`), 503],
    ])('answers a 5xx %s like an unknown error: its text withheld, the request id given and logged', async (_name, exception, status) => {
      const response = await answerTo(exception);
      const body = response.json<{ requestId: string }>();
      expect(response.statusCode).toBe(status);
      expect(body).toEqual({
        statusCode: status,
        error: 'internal_error',
        message: `internal error; quote request id ${body.requestId} when reporting it`,
        requestId: body.requestId,
      });
      expect(body.requestId).toMatch(/^req-\d+$/);
      expect(response.body).not.toContain(SECRET);
      expect(logged).toEqual([{ level: 'error', fields: { requestId: body.requestId, err: exception }, message: 'unhandled error' }]);
    });
  });

  describe('a database that cannot be reached', () => {
    it('is a 503 database_unavailable with Retry-After, its cause logged once at warn and never answered', async () => {
      const response = await answerTo(pgError('connect ECONNREFUSED 10.9.8.7:5432', 'ECONNREFUSED'));
      expect(response.statusCode).toBe(503);
      expect(response.headers['retry-after']).toBe(String(DATABASE_RETRY_AFTER_SEC));
      expect(response.json()).toEqual({
        statusCode: 503,
        error: 'database_unavailable',
        message: 'the database cannot be reached right now; try again shortly',
        retryAfter: DATABASE_RETRY_AFTER_SEC,
      });
      expect(response.body).not.toContain('10.9.8.7');
      expect(logged).toEqual([
        { level: 'warn', fields: { requestId: 'req-' + String(requests), cause: 'ECONNREFUSED connect ECONNREFUSED 10.9.8.7:5432' }, message: 'database unavailable; answered 503' },
      ]);
    });

    it('is recognised inside a wrapping query error, and the logged cause has no database URL', async () => {
      const driver = pgError(`connection to postgres://broker:${SECRET}@db.internal:5432/broker failed`, '08006');
      const wrapped = Object.assign(new Error('Query failed'), { driverError: driver });
      const response = await answerTo(wrapped);
      expect(response.statusCode).toBe(503);
      expect(response.json<{ error: string }>().error).toBe('database_unavailable');
      expect(logged).toHaveLength(1);
      expect(logged[0].level).toBe('warn');
      expect(logged[0].fields.cause).toBe('08006 connection to <database url> failed');
      expect(JSON.stringify(logged)).not.toContain(SECRET);
      expect(response.body).not.toContain(SECRET);
    });

    it('answers a DomainError with that code as raised, without logging it again', async () => {
      const response = await answerTo(new DomainError(ErrorCode.DatabaseUnavailable, 'the database cannot be reached right now', { retryAfter: 5 }));
      expect(response.statusCode).toBe(503);
      expect(response.headers['retry-after']).toBe('5');
      expect(logged).toEqual([]);
    });

    it('leaves a query that is wrong (not an outage) an internal error', async () => {
      const response = await answerTo(pgError('relation "connections" does not exist', '42P01'));
      expect(response.statusCode).toBe(500);
      expect(response.json<{ error: string }>().error).toBe('internal_error');
      expect(response.headers['retry-after']).toBeUndefined();
      expect(logged.map((entry) => entry.level)).toEqual(['error']);
    });
  });

  describe('unknown errors', () => {
    it.each([
      ['an Error whose message holds a secret', new Error(`refresh failed for token ${SECRET}`)],
      ['a thrown string', `a string holding ${SECRET}`],
      ['a thrown null', null],
      ['an object with a 4xx statusCode that is not Fastify\'s', Object.assign(new Error(`bad ${SECRET}`), { statusCode: 400 })],
      ['a Fastify-coded error with a 5xx status', Object.assign(new Error(`FST internals ${SECRET}`), { statusCode: 500, code: 'FST_ERR_SOMETHING' })],
    ])('answer %s with a generic 500 carrying the request id, logged once with the cause', async (_name, error) => {
      const response = await answerTo(error);
      const body = response.json<{ requestId: string }>();
      expect(response.statusCode).toBe(500);
      expect(body.requestId).toMatch(/^req-\d+$/);
      expect(body).toEqual({
        statusCode: 500,
        error: 'internal_error',
        message: `internal error; quote request id ${body.requestId} when reporting it`,
        requestId: body.requestId,
      });
      expect(response.body).not.toContain(SECRET);
      expect(response.headers['retry-after']).toBeUndefined();
      // The operator finds the cause under the id the caller quotes.
      expect(logged).toEqual([{ level: 'error', fields: { requestId: body.requestId, err: error }, message: 'unhandled error' }]);
    });

    it('gives each request its own id', async () => {
      const first = (await answerTo(new Error('x'))).json<{ requestId: string }>().requestId;
      const second = (await answerTo(new Error('x'))).json<{ requestId: string }>().requestId;
      expect(first).not.toBe(second);
    });
  });

  describe('errors Fastify raises itself', () => {
    it.each([
      ['a body that is not JSON', '{"account":', 'application/json', 400, 'validation_failed', "Body is not valid JSON but content-type is set to 'application/json'"],
      ['an empty JSON body', '', 'application/json', 400, 'validation_failed', "Body cannot be empty when content-type is set to 'application/json'"],
      ['a body over the limit', JSON.stringify({ apiKey: 'x'.repeat(100) }), 'application/json', 413, 'payload_too_large', 'Request body is too large'],
      ['an unsupported media type', 'a,b', 'text/csv', 415, 'validation_failed', 'Unsupported Media Type'],
    ])('answers %s in the one error shape, logging nothing', async (_name, payload, contentType, status, code, message) => {
      const response = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': contentType }, payload });
      expect(response.statusCode).toBe(status);
      expect(response.json()).toEqual({ statusCode: status, error: code, message });
      expect(logged).toEqual([]);
    });

    it('does not echo a body that is not JSON', async () => {
      const response = await app.inject({ method: 'POST', url: '/echo', headers: { 'content-type': 'application/json' }, payload: `{"apiKey":"${SECRET}"` });
      expect(response.statusCode).toBe(400);
      expect(response.body).not.toContain(SECRET);
    });

    it('answers a malformed percent-escape in the path with a 400 that does not echo the URL or its query string', async () => {
      const response = await app.inject({ url: `/items/%zz?session=${SECRET}` });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({ statusCode: 400, error: 'validation_failed', message: 'the URL path has a malformed percent-escape' });
      expect(response.body).not.toContain(SECRET);
    });

    it('answers a path parameter over the length limit with a short 414', async () => {
      const response = await app.inject({ url: `/items/${'a'.repeat(5_000)}?session=${SECRET}` });
      expect(response.statusCode).toBe(414);
      expect(response.json()).toEqual({ statusCode: 414, error: 'uri_too_long', message: 'a path segment of the URL is too long' });
      expect(response.body).not.toContain(SECRET);
    });
  });
});

describe('frameworkErrorBody', () => {
  it('keeps a 4xx status and maps it to a code', () => {
    expect(frameworkErrorBody({ statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE', message: 'Request body is too large' })).toEqual({
      statusCode: 413,
      error: 'payload_too_large',
      message: 'Request body is too large',
    });
    expect(frameworkErrorBody({ statusCode: 404, message: 'Not Found' }).error).toBe('route_not_found');
    expect(frameworkErrorBody({ statusCode: 422, message: 'unprocessable' }).error).toBe('validation_failed');
  });

  it('answers 400 for a status that is missing or not a client error', () => {
    for (const statusCode of [undefined, 200, 302, 500, 503]) {
      const body = frameworkErrorBody({ statusCode, message: 'x' });
      expect(body.statusCode).toBe(400);
      expect(body.error).toBe('validation_failed');
    }
  });

  it('says "bad request" when Fastify gave no message', () => {
    expect(frameworkErrorBody({ statusCode: 400 }).message).toBe('bad request');
  });
});

describe('errorCodeOf (the outcome an audit record gives a failed request)', () => {
  it.each([
    ['a domain error', new DomainError(ErrorCode.Revoked, 'revoked'), 'revoked'],
    ['a 404 HttpException', new NotFoundException(), 'route_not_found'],
    ['a 403 HttpException', new ForbiddenException(), 'forbidden'],
    ['a 5xx HttpException', new ServiceUnavailableException(), 'internal_error'],
    ['a database outage', pgError('Connection terminated unexpectedly'), 'database_unavailable'],
    ['a Fastify body error', Object.assign(new Error('too large'), { statusCode: 413, code: 'FST_ERR_CTP_BODY_TOO_LARGE' }), 'payload_too_large'],
    ['anything else', new TypeError('undefined is not a function'), 'internal_error'],
    ['a thrown string', 'oops', 'internal_error'],
  ])('gives %s the code its answer carries', (_name, error, code) => {
    expect(errorCodeOf(error)).toBe(code);
  });
});
