import { TokenReadAudit } from '@app/audit';
import { ApiKeyVerifier, Caller, ServiceGrants } from '@app/auth';
import { ACCOUNT_ID_PATTERN, assertAccountId, ErrorCode } from '@app/common';
import { isProviderId, PROVIDER_IDS, ProviderId, unknownProviderError } from '@app/providers';
import { IssuedToken, MAX_MIN_VALIDITY_SEC, TokenService } from '@app/tokens';
import { Injectable, Logger, OnModuleDestroy, OnModuleInit } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { OpenAPIObject } from '@nestjs/swagger';
import type { SchemaObject } from '@nestjs/swagger/dist/interfaces/open-api-spec.interface';
import fastJson, { ObjectSchema } from 'fast-json-stringify';
import { parse as parseQueryString } from 'fast-querystring';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { Drain } from '../health/drain';
import { errorCodeOf, sendError } from '../http/error.filter';
import { requestIdOf } from '../http/request-id';
import { DERIVED_TOKEN_APIS, parseTokenQuery, TOKEN_RESPONSE_SCHEMA, TokenQuery } from './token-read.dto';

export const TOKEN_READ_PATH = '/tokens/:account';
const TOKEN_READ_PREFIX = '/tokens/';

/**
 * GET /tokens/:account, the broker's hot path, served by Fastify directly instead of a Nest
 * controller, because Nest's per-request pipeline (execution context, guard consumer, param
 * pipes, response controller) costs more than the read's own work: a controller that does
 * nothing answers more slowly than this route doing the whole read. The measurements are in
 * docs/decisions/0001-token-read-served-by-fastify.md.
 *
 * It is the one route outside a controller besides /docs, and it gives up nothing a controller
 * route gets: the service key is checked by the guard's own ApiKeyVerifier.authorize, errors go
 * through the same sendError as ErrorFilter, the request id and request log come from the
 * adapter's hooks (every Fastify route runs them; the lane below writes the same request id and
 * declines whenever the request log wants a line per read), and its OpenAPI entry is added by
 * documentTokenRead.
 * test/foundation/http.e2e-spec.ts lists it as the only guarded route outside a controller and
 * checks it refuses a missing, unknown or admin key.
 *
 * What it must never do: skip the key check or answer in another error shape. And what it cannot
 * get: a global guard, interceptor or pipe added to the app later does not run here; add what
 * this route needs of it by hand.
 *
 * In front of Fastify sits the cached lane (`answerFromCache`): node:http hands every request to
 * it first, and it answers the one kind that is nearly all of the traffic, a service reading a
 * cached token it is granted, with the bytes the route would send, and hands everything else to
 * Fastify untouched. Without Fastify's request and reply objects, router and hooks around it, a
 * cached read served 14 % more requests a second (docs/decisions/0017-cached-token-read-lane.md).
 * The lane only decides with checks
 * that record nothing (a key it does not know, a grant it does not find, an error it would have
 * to answer: it declines, and the route does all of it again, audit included), and it records
 * exactly what the route records for a served read. test/tokens/cached-read-lane.e2e-spec.ts
 * holds the two to the same answer. So a change to what a served read sends or records goes in
 * what both share (TokenService.issue, TOKEN_RESPONSE_SCHEMA) or in both `read` and
 * `answerFromCache`; a Fastify hook added later does not run for a lane answer.
 */
@Injectable()
export class TokenReadRoute implements OnModuleInit, OnModuleDestroy {
  private readonly logger = new Logger('Errors');
  /** The route's own serializer, compiled from the same schema by the same library Fastify uses. */
  private readonly serialize: (token: IssuedToken) => string = fastJson(TOKEN_RESPONSE_SCHEMA as unknown as ObjectSchema);
  /** Open from putLaneInFront until the broker shuts down. */
  private laneOpen = false;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    private readonly verifier: ApiKeyVerifier,
    private readonly grants: ServiceGrants,
    private readonly tokens: TokenService,
    private readonly reads: TokenReadAudit,
    private readonly drain: Drain,
  ) {}

  onModuleInit(): void {
    const fastify = this.adapterHost.httpAdapter.getInstance<FastifyInstance>();
    fastify.route({
      method: 'GET',
      url: TOKEN_READ_PATH,
      // Serialised by a function fast-json-stringify compiles from the schema (see TOKEN_RESPONSE_SCHEMA).
      schema: { response: { 200: TOKEN_RESPONSE_SCHEMA } },
      handler: (request, reply) => this.read(request as FastifyRequest<{ Params: { account: string } }>, reply),
      errorHandler: (error, request, reply) => sendError(error, request, reply, this.logger),
    });
  }

  onModuleDestroy(): void {
    // From here on Fastify answers everything, as it did before the lane, 503s while it closes included.
    this.laneOpen = false;
  }

  /**
   * Answers a request when it is a plain read of a cached token (GET /tokens/:account with an
   * account id that needs no decoding, a service key, the caller's grants, no `api=`, a
   * connection tokenFor would serve from the cache at once) and returns true; returns false,
   * having written and recorded nothing, for any other request.
   */
  answerFromCache(req: IncomingMessage, res: ServerResponse): boolean {
    if (!this.laneOpen || req.method !== 'GET' || this.drain.active) return false;
    const url = req.url ?? '';
    if (!url.startsWith(TOKEN_READ_PREFIX)) return false;
    const queryAt = url.indexOf('?', TOKEN_READ_PREFIX.length);
    const account = queryAt === -1 ? url.slice(TOKEN_READ_PREFIX.length) : url.slice(TOKEN_READ_PREFIX.length, queryAt);
    // The route's own check, on the path as sent: an id with %-escapes, or none at all, goes to Fastify.
    if (!ACCOUNT_ID_PATTERN.test(account)) return false;
    let query: TokenQuery;
    try {
      // Fastify's router parses the query with fast-querystring too (find-my-way), so both see the same values.
      query = queryAt === -1 ? NO_QUERY : parseTokenQuery(parseQueryString(url.slice(queryAt + 1)));
    } catch {
      return false;
    }
    // Before the key's digest, so that a read the route serves anyway (a derived token) pays for it once.
    if (query.api !== undefined) return false;
    const caller = this.verifier.callerOf(req.headers.authorization, 'service');
    if (caller === undefined) return false;
    let token: IssuedToken | undefined;
    try {
      token = this.tokens.cachedToken(account, query.provider, query.minValiditySec, this.grantedFor(caller, account, query.provider));
    } catch {
      // An answer the route gives in its error shape (and audits): provider_unknown, not_granted, token_unreadable.
      return false;
    }
    if (token === undefined) return false;
    const body = this.serialize(token);
    this.served(caller, token);
    res.writeHead(200, {
      'x-request-id': requestIdOf(req),
      'cache-control': 'no-store',
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(body);
    return true;
  }

  /**
   * Makes `server` (Fastify's) give each request to the cached lane first, and to Fastify's own
   * handler when the lane declines it. startBroker calls it unless every read is to be logged:
   * the request log line is written by Fastify's onResponse hook, which the lane does not run.
   */
  putLaneInFront(server: Server): void {
    const listeners = server.listeners('request') as Array<(req: IncomingMessage, res: ServerResponse) => void>;
    if (listeners.length !== 1) throw new Error(`expected Fastify's one request listener on the HTTP server, found ${listeners.length}`);
    const [fastify] = listeners;
    server.removeListener('request', fastify);
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      let answered: boolean;
      try {
        answered = this.answerFromCache(req, res);
      } catch (error) {
        // Nothing in the lane is expected to throw. Should something, the request is not lost and
        // the process does not crash: the route answers it (in its error shape) unless the lane already did.
        this.logger.error({ err: error }, 'the cached token read lane failed; the route answers instead');
        answered = res.headersSent;
      }
      if (!answered) fastify(req, res);
    });
    this.laneOpen = true;
  }

  /**
   * Synchronous for a cached token that needs no refresh; a promise otherwise (see
   * TokenService.tokenFor). Fastify sends either, and routes a synchronous throw or a rejection
   * alike to the errorHandler.
   *
   * The caller's grants are checked in memory before any cache or database lookup, so a refusal
   * reads the same whether the account exists or not. Every answer to an authenticated caller is
   * counted for the audit trail (TokenReadAudit: in memory, aggregated per minute), never written
   * per request.
   */
  private read(request: FastifyRequest<{ Params: { account: string } }>, reply: FastifyReply): IssuedToken | Promise<IssuedToken> {
    // First, so that every answer carries it, errors included.
    void reply.header('cache-control', 'no-store');
    const caller = this.verifier.authorize(request.headers.authorization, 'service', request);
    const account = request.params.account;
    let provider: string | undefined;
    try {
      assertAccountId(account);
      const query = parseTokenQuery(request.query as Record<string, unknown>);
      provider = query.provider;
      const granted = this.grantedFor(caller, account, provider);
      const issued = this.tokens.tokenFor(account, provider, query.minValiditySec, granted, query.api);
      if (issued instanceof Promise) return issued.then((token) => this.served(caller, token), (error: unknown) => this.refused(caller, account, provider, error));
      return this.served(caller, issued);
    } catch (error) {
      return this.refused(caller, account, provider, error);
    }
  }

  /**
   * The caller's grants for this read, checked in memory before any lookup: with a provider,
   * that one must be granted (and known); without, the providers to consider (undefined: all).
   * @throws DomainError provider_unknown, not_granted
   */
  private grantedFor(caller: Caller, account: string, provider: string | undefined): ReadonlyArray<ProviderId> | undefined {
    if (provider === undefined) return this.grants.grantedProviders(caller, account);
    if (!isProviderId(provider)) throw unknownProviderError(provider);
    this.grants.assertGranted(caller, provider, account);
    return undefined;
  }

  private served(caller: Caller, token: IssuedToken): IssuedToken {
    this.reads.count(caller.name, token.account, token.provider, SERVED);
    return token;
  }

  private refused(caller: Caller, account: string, provider: string | undefined, error: unknown): never {
    this.reads.count(caller.name, account, provider ?? null, readOutcome(error));
    throw error;
  }
}

const SERVED = 'served';
/** What parseTokenQuery makes of a read without a query string. */
const NO_QUERY: TokenQuery = parseTokenQuery({});

/** DESIGN's words for the outcomes of a read it names; any other refusal is recorded by its error code. */
const READ_OUTCOMES: Partial<Record<ErrorCode, string>> = {
  [ErrorCode.ConnectionNotFound]: 'not_found',
  [ErrorCode.ProviderUnavailable]: 'unavailable',
};

/** The audit outcome of a read that was not served. */
function readOutcome(error: unknown): string {
  const code = errorCodeOf(error);
  return READ_OUTCOMES[code] ?? code;
}

/** Adds GET /tokens/{account} to the OpenAPI document, as @nestjs/swagger would for a controller route. */
export function documentTokenRead(document: OpenAPIObject): void {
  const errorBody: SchemaObject = {
    type: 'object',
    required: ['statusCode', 'error', 'message'],
    properties: { statusCode: { type: 'integer' }, error: { type: 'string' }, message: { type: 'string' } },
  };
  document.components ??= {};
  document.components.schemas = { ...document.components.schemas, TokenResponse: TOKEN_RESPONSE_SCHEMA as unknown as SchemaObject };
  const error = (description: string) => ({ description, content: { 'application/json': { schema: errorBody } } });
  document.paths['/tokens/{account}'] = {
    get: {
      operationId: 'getToken',
      summary: 'A token valid now (for at least minValidity seconds), with how to apply it',
      tags: ['tokens'],
      security: [{ bearer: [] }],
      parameters: [
        { name: 'account', in: 'path', required: true, schema: { type: 'string', pattern: ACCOUNT_ID_PATTERN.source } },
        {
          name: 'provider',
          in: 'query',
          required: false,
          description: 'required when the account has several connections',
          schema: { type: 'string', enum: [...PROVIDER_IDS] },
        },
        {
          name: 'minValidity',
          in: 'query',
          required: false,
          description: `seconds the token must stay valid, 0-${MAX_MIN_VALIDITY_SEC} (default 60)`,
          schema: { type: 'integer', minimum: 0, maximum: MAX_MIN_VALIDITY_SEC },
        },
        {
          name: 'api',
          in: 'query',
          required: false,
          description:
            'a token derived for that API instead of the stored one: v4 is Copernica\'s REST v4 JWT (tokenType Bearer, expiresAt from its exp, ' +
            'apply Authorization: Bearer), minted on first use and ahead of its expiry, served from the cache',
          schema: { type: 'string', enum: [...DERIVED_TOKEN_APIS] },
        },
      ],
      responses: {
        200: { description: 'the token', content: { 'application/json': { schema: { $ref: '#/components/schemas/TokenResponse' } } } },
        400: error('invalid_account, provider_unknown, provider_ambiguous (lists the providers), api_not_supported (api= for a provider that derives no such token) or validation_failed'),
        401: error('no API key, or one that is not recognised'),
        403: error('forbidden: not a service key; not_granted: the account or provider is outside this service key\'s SERVICE_GRANTS (the same answer whether the account exists or not)'),
        404: error('connection_not_found'),
        409: error('needs_reauth (an API key past its expiresAt says reason: credential_expired) or revoked: open a new connect session or store a new key'),
        500: error('token_unreadable: the stored token cannot be decrypted (its key left TOKEN_ENCRYPTION_KEYS, or the row was altered); or internal, with a request id'),
        502: error('provider_misconfigured: the token expired and the provider rejected the broker\'s client credentials'),
        503: error('provider_unavailable: the token expired and could not be refreshed; database_unavailable: the database cannot be reached (both with Retry-After)'),
      },
    },
  };
}
