import { DomainError, ErrorCode } from '@app/common';
import { ConnectionStatus } from '@app/connections';
import fastify, { FastifyInstance } from 'fastify';
import { sendError } from '../http/error.filter';
import { assertNoQuery, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, parseAuditQuery, parseListQuery, parseProviderQuery } from './admin-query';

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

describe('admin query parsing', () => {
  describe('parseListQuery (GET /admin/connections)', () => {
    it('defaults to every provider and status, the first page, 50 a page', () => {
      expect(parseListQuery({})).toEqual({ filter: { provider: undefined, status: undefined }, cursor: null, limit: DEFAULT_PAGE_SIZE });
      expect(DEFAULT_PAGE_SIZE).toBe(50);
    });

    it('reads every parameter it knows', () => {
      expect(parseListQuery({ provider: 'copper', status: 'needs_reauth', cursor: 'eyJhIjoxfQ', limit: '20' })).toEqual({
        filter: { provider: 'copper', status: ConnectionStatus.NeedsReauth },
        cursor: 'eyJhIjoxfQ',
        limit: 20,
      });
    });

    it('takes an empty value as absent, so a form that submits every field still works', () => {
      expect(parseListQuery({ provider: '', status: '', cursor: '', limit: '' })).toEqual(parseListQuery({}));
    });

    it.each(['active', 'needs_reauth', 'revoked'])('accepts status %s', (status) => {
      expect(parseListQuery({ status }).filter.status).toBe(status);
    });

    it('refuses an unknown status and names the ones there are', () => {
      const error = failure(() => parseListQuery({ status: 'ACTIVE' }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message).toBe('status must be one of active, needs_reauth, revoked');
    });

    describe('limit', () => {
      it.each([
        ['1', 1],
        ['200', 200],
        ['007', 7],
        ['000200', 200],
      ])('accepts %s', (limit, expected) => {
        expect(parseListQuery({ limit }).limit).toBe(expected);
      });

      it.each(['0', '201', '-1', '1.5', '1e2', '+5', ' 5', '5 ', '0x10', 'ten', '9999999', '1'.repeat(10_000)])('refuses %j', (limit) => {
        const error = failure(() => parseListQuery({ limit }));
        expect(error.code).toBe(ErrorCode.ValidationFailed);
        expect(error.message).toBe(`limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`);
      });
    });

    describe('cursor', () => {
      it('accepts base64url up to 512 characters', () => {
        const longest = 'A'.repeat(512);
        expect(parseListQuery({ cursor: longest }).cursor).toBe(longest);
        expect(parseListQuery({ cursor: 'aZ09_-' }).cursor).toBe('aZ09_-');
      });

      it.each([
        ['over 512 characters', 'A'.repeat(513)],
        ['standard base64 with +', 'ab+c'],
        ['standard base64 with /', 'ab/c'],
        ['base64 padding', 'abc='],
        ['a quote and SQL', "x' OR 1=1 --"],
        ['a NUL', 'ab\u0000c'],
      ])('refuses one %s, without echoing it', (_name, cursor) => {
        const error = failure(() => parseListQuery({ cursor }));
        expect(error.code).toBe(ErrorCode.ValidationFailed);
        expect(error.message).toBe('cursor is not one this service issued; start again without it');
      });
    });

    describe('provider', () => {
      it.each(['copper', 'copernica', 'copyai'])('accepts %s', (provider) => {
        expect(parseListQuery({ provider }).filter.provider).toBe(provider);
      });

      it('answers an unknown provider alone with provider_unknown, as GET /tokens does', () => {
        const error = failure(() => parseListQuery({ provider: 'salesforce' }));
        expect(error.code).toBe(ErrorCode.ProviderUnknown);
        expect(error.message).toBe('unknown provider "salesforce"; known: copper, copernica, copyai');
      });

      it('echoes at most 40 characters of an over-long provider', () => {
        const error = failure(() => parseListQuery({ provider: 'x'.repeat(5_000) }));
        expect(error.code).toBe(ErrorCode.ProviderUnknown);
        expect(error.message).toBe(`unknown provider "${'x'.repeat(40)}"; known: copper, copernica, copyai`);
      });

      it('is case-sensitive', () => {
        expect(failure(() => parseListQuery({ provider: 'Copper' })).code).toBe(ErrorCode.ProviderUnknown);
      });
    });

    it('says a repeated parameter must be given once', () => {
      for (const key of ['provider', 'status', 'cursor', 'limit']) {
        const error = failure(() => parseListQuery({ [key]: ['a', 'b'] }));
        expect(error.code).toBe(ErrorCode.ValidationFailed);
        expect(error.message).toBe(`${key} must be given once`);
      }
    });

    it('refuses an unknown parameter rather than ignore a typo', () => {
      const error = failure(() => parseListQuery({ statuss: 'active' }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message).toBe('property statuss should not exist');
    });

    it('echoes at most 40 characters of an over-long unknown parameter name', () => {
      const error = failure(() => parseListQuery({ ['k'.repeat(5_000)]: '1' }));
      expect(error.message).toBe(`property ${'k'.repeat(40)} should not exist`);
    });

    it('lists every problem in one message, an unknown provider included, as validation_failed', () => {
      const error = failure(() => parseListQuery({ page: '2', status: 'gone', limit: '0', cursor: 'a/b', provider: 'nope' }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message).toBe(
        [
          'property page should not exist',
          'status must be one of active, needs_reauth, revoked',
          'cursor is not one this service issued; start again without it',
          `limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`,
          'unknown provider "nope"; known: copper, copernica, copyai',
        ].join('; '),
      );
    });
  });

  describe('parseProviderQuery (the single-connection routes)', () => {
    it('is optional: no provider, or an empty one, means "the account\'s only connection"', () => {
      expect(parseProviderQuery({})).toBeUndefined();
      expect(parseProviderQuery({ provider: '' })).toBeUndefined();
    });

    it('returns a known provider', () => {
      expect(parseProviderQuery({ provider: 'copernica' })).toBe('copernica');
    });

    it('answers an unknown provider with provider_unknown', () => {
      expect(failure(() => parseProviderQuery({ provider: 'hubspot' })).code).toBe(ErrorCode.ProviderUnknown);
    });

    it('refuses a repeated provider and any other parameter', () => {
      expect(failure(() => parseProviderQuery({ provider: ['copper', 'copyai'] })).message).toBe('provider must be given once');
      const error = failure(() => parseProviderQuery({ provider: 'copper', status: 'active' }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message).toBe('property status should not exist');
    });
  });

  describe('parseAuditQuery (GET /admin/audit)', () => {
    it('defaults to no filter, the first page, 50 a page; empty values count as absent', () => {
      expect(parseAuditQuery({})).toEqual({ filter: { account: undefined, provider: undefined, actor: undefined, action: undefined, since: undefined, until: undefined }, cursor: null, limit: DEFAULT_PAGE_SIZE });
      expect(parseAuditQuery({ account: '', actor: '', since: '' }).filter.account).toBeUndefined();
    });

    it('reads every filter', () => {
      const { filter, cursor, limit } = parseAuditQuery({
        account: 'acme-42',
        provider: 'copyai',
        actor: 'billing',
        action: 'token.read',
        since: '2026-06-01',
        until: '2026-06-02T12:30:00+02:00',
        cursor: 'abc_-9',
        limit: '200',
      });
      expect(filter).toEqual({
        account: 'acme-42',
        provider: 'copyai',
        actor: 'billing',
        action: 'token.read',
        since: new Date(Date.UTC(2026, 5, 1)),
        until: new Date(Date.UTC(2026, 5, 2, 10, 30)),
      });
      expect([cursor, limit]).toEqual(['abc_-9', 200]);
    });

    it('lists every bad value in one message', () => {
      const error = failure(() =>
        parseAuditQuery({ account: 'not valid', actor: 'a b', action: 'token.write', since: 'yesterday', until: '2026-13-45', limit: '0', cursor: 'a=b', extra: '1' }),
      );
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      for (const part of ['property extra should not exist', 'since must be an ISO 8601 time', 'until must be an ISO 8601 time', 'cursor is not one', 'limit must be', 'account must be', 'actor must be', 'action must be one of']) {
        expect(error.message).toContain(part);
      }
    });

    it('answers an unknown provider with provider_unknown, as the other routes', () => {
      expect(failure(() => parseAuditQuery({ provider: 'salesforce' })).code).toBe(ErrorCode.ProviderUnknown);
    });
  });

  describe('assertNoQuery (routes that take no parameters)', () => {
    it('passes an empty query', () => {
      expect(() => assertNoQuery({})).not.toThrow();
    });

    it('refuses any parameter, even an empty one, naming each', () => {
      const error = failure(() => assertNoQuery({ force: 'true', dryRun: '' }));
      expect(error.code).toBe(ErrorCode.ValidationFailed);
      expect(error.message).toBe('property force should not exist; property dryRun should not exist');
    });
  });

  describe('as Fastify hands a query string to the route', () => {
    let app: FastifyInstance;
    const logger = { error: (): void => undefined, warn: (): void => undefined };

    beforeAll(async () => {
      app = fastify();
      app.get('/list', (request) => parseListQuery(request.query as Record<string, unknown>));
      app.setErrorHandler((error, request, reply) => sendError(error, request, reply, logger));
      await app.ready();
    });
    afterAll(() => app.close());

    it('answers a good query with the parsed page', async () => {
      const response = await app.inject({ url: '/list?provider=copyai&status=active&limit=10' });
      expect(response.statusCode).toBe(200);
      expect(response.json()).toEqual({ filter: { provider: 'copyai', status: 'active' }, cursor: null, limit: 10 });
    });

    it('treats ?limit and ?limit= alike, as absent', async () => {
      for (const url of ['/list?limit', '/list?limit=', '/list?provider=&status=&cursor=&limit=']) {
        const response = await app.inject({ url });
        expect(response.statusCode).toBe(200);
        expect(response.json()).toMatchObject({ limit: DEFAULT_PAGE_SIZE, cursor: null });
      }
    });

    it('answers a repeated parameter with a 400 in the broker\'s error shape', async () => {
      const response = await app.inject({ url: '/list?limit=10&limit=20' });
      expect(response.statusCode).toBe(400);
      expect(response.json()).toEqual({ statusCode: 400, error: 'validation_failed', message: 'limit must be given once' });
    });

    it('refuses __proto__ and constructor as the unknown parameters they are', async () => {
      const response = await app.inject({ url: '/list?__proto__=x&constructor=y' });
      expect(response.statusCode).toBe(400);
      expect(response.json().message).toBe('property __proto__ should not exist; property constructor should not exist');
    });

    it('refuses a percent-encoded cursor that decodes to characters we never issue', async () => {
      const response = await app.inject({ url: '/list?cursor=abc%2Bdef' });
      expect(response.statusCode).toBe(400);
      expect(response.json().error).toBe('validation_failed');
    });
  });
});
