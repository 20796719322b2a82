import { DomainError, ErrorCode } from '@app/common';
import { DEFAULT_MIN_VALIDITY_SEC, MAX_MIN_VALIDITY_SEC } from '@app/tokens';
import fastify, { FastifyInstance } from 'fastify';
import { sendError } from '../http/error.filter';
import { parseTokenQuery } from './token-read.dto';

/** The DomainError `run` throws (fails the test if it throws nothing, or something else). */
function failure(run: () => unknown): DomainError {
  try {
    run();
  } catch (error) {
    if (error instanceof DomainError) return error;
    throw error;
  }
  throw new Error('expected a DomainError');
}

describe('parseTokenQuery (GET /tokens/:account?provider=&minValidity=)', () => {
  it('defaults to no provider and 60 seconds of validity', () => {
    expect(parseTokenQuery({})).toEqual({ provider: undefined, minValiditySec: 60 });
    expect(DEFAULT_MIN_VALIDITY_SEC).toBe(60);
  });

  it('reads both parameters', () => {
    expect(parseTokenQuery({ provider: 'copernica', minValidity: '300' })).toEqual({ provider: 'copernica', minValiditySec: 300 });
  });

  describe('minValidity', () => {
    it.each([
      ['0', 0],
      ['1', 1],
      ['1800', 1800],
      ['0060', 60],
    ])('accepts %s', (minValidity, expected) => {
      expect(parseTokenQuery({ minValidity }).minValiditySec).toBe(expected);
    });

    it('allows at most 30 minutes', () => {
      expect(MAX_MIN_VALIDITY_SEC).toBe(1_800);
      const error = failure(() => parseTokenQuery({ minValidity: '1801' }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message).toBe('minValidity must be at most 1800 seconds');
    });

    it('refuses a negative number', () => {
      expect(failure(() => parseTokenQuery({ minValidity: '-1' })).message).toBe('minValidity must not be negative');
    });

    it.each(['', 'sixty', '60s', '1.5', '60.0', '1e3', '+60', ' 60', '60 ', '0x3c', 'NaN', 'Infinity', '١٢'])('refuses %j as not a whole number', (minValidity) => {
      const error = failure(() => parseTokenQuery({ minValidity }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message).toBe('minValidity must be a whole number of seconds');
    });

    it('refuses a 10 000-digit number without echoing it', () => {
      const error = failure(() => parseTokenQuery({ minValidity: '9'.repeat(10_000) }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message.length).toBeLessThan(100);
    });

    it('refuses a repeated minValidity', () => {
      expect(failure(() => parseTokenQuery({ minValidity: ['60', '120'] })).code).toBe(ErrorCode.ValidationFailed);
    });
  });

  describe('provider', () => {
    it('passes a provider id through: whether it is known is decided with the account\'s connections', () => {
      expect(parseTokenQuery({ provider: 'copper' }).provider).toBe('copper');
      expect(parseTokenQuery({ provider: 'salesforce' }).provider).toBe('salesforce');
    });

    it('does not take an empty provider as omitted (TokenService answers it as provider_unknown)', () => {
      expect(parseTokenQuery({ provider: '' }).provider).toBe('');
    });

    it('refuses a repeated provider, and one longer than any provider id, without echoing it', () => {
      for (const provider of [['copper', 'copyai'], 'x'.repeat(33), 'x'.repeat(100_000)]) {
        const error = failure(() => parseTokenQuery({ provider }));
        expect(error.code).toBe(ErrorCode.ValidationFailed);
        expect(error.message).toBe('provider must be one provider id');
      }
    });
  });

  describe('api', () => {
    it('takes v4, the one API a provider derives a token for; whether the connection\'s provider has it is decided later', () => {
      expect(parseTokenQuery({ provider: 'copper', api: 'v4' })).toEqual({ provider: 'copper', minValiditySec: 60, api: 'v4' });
      expect(parseTokenQuery({}).api).toBeUndefined();
    });

    it.each(['v3', 'V4', '', 'v4 ', 'x'.repeat(5_000)])('refuses %j without echoing it', (api) => {
      const error = failure(() => parseTokenQuery({ api }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message).toBe('api must be v4');
    });

    it('refuses a repeated api', () => {
      expect(failure(() => parseTokenQuery({ api: ['v4', 'v4'] })).message).toBe('api must be v4');
    });
  });

  describe('other parameters', () => {
    it('are refused rather than ignored', () => {
      const error = failure(() => parseTokenQuery({ min_validity: '300' }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message).toBe('property min_validity should not exist');
    });

    it('are refused even when empty', () => {
      expect(failure(() => parseTokenQuery({ refresh: '' })).message).toBe('property refresh should not exist');
    });

    it('echo at most 40 characters of an over-long name', () => {
      const error = failure(() => parseTokenQuery({ ['k'.repeat(8_000)]: '1' }));
      expect(error.message).toBe(`property ${'k'.repeat(40)} should not exist`);
    });
  });

  it('lists every problem in one message', () => {
    const error = failure(() => parseTokenQuery({ scope: 'all', provider: ['a', 'b'], minValidity: '99999' }));
    expect(error.code).toBe(ErrorCode.ValidationFailed);
    expect(error.message.split('; ')).toEqual([
      'property scope should not exist',
      'provider must be one provider id',
      'minValidity must be at most 1800 seconds',
    ]);
  });

  describe('as Fastify hands a query string to the route', () => {
    let app: FastifyInstance;
    const logger = { error: (): void => undefined, warn: (): void => undefined };

    beforeAll(async () => {
      app = fastify();
      app.get('/tokens/:account', (request) => parseTokenQuery(request.query as Record<string, unknown>));
      app.setErrorHandler((error, request, reply) => sendError(error, request, reply, logger));
      await app.ready();
    });
    afterAll(() => app.close());

    it('reads a good query string', async () => {
      const response = await app.inject({ url: '/tokens/acme-42?provider=copper&minValidity=900' });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ provider: 'copper', minValiditySec: 900 });
    });

    it('answers ?minValidity with no value, and a repeated one, with a 400 in the broker\'s error shape', async () => {
      for (const url of ['/tokens/acme-42?minValidity', '/tokens/acme-42?minValidity=', '/tokens/acme-42?minValidity=60&minValidity=60']) {
        const response = await app.inject({ url });
        expect(response.statusCode).toBe(400);
        expect(response.json()).toEqual({ statusCode: 400, error: 'validation_failed', message: 'minValidity must be a whole number of seconds' });
      }
    });

    it('refuses __proto__ as the unknown parameter it is', async () => {
      const response = await app.inject({ url: '/tokens/acme-42?__proto__=x' });
      expect(response.statusCode).toBe(400);
      expect(response.json().message).toBe('property __proto__ should not exist');
    });
  });
});
