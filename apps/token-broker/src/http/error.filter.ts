import { DomainError, ErrorCode } from '@app/common';
import { httpStatusOf } from './http-status';
import { describeDatabaseError, isDatabaseUnavailable } from '@app/database';
import { ArgumentsHost, Catch, ExceptionFilter, HttpException, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';

export interface ErrorBody {
  statusCode: number;
  error: ErrorCode;
  message: string;
  requestId?: string;
  [detail: string]: unknown;
}

/**
 * Retry-After when the database cannot be reached: about the pool's connect timeout, so a caller
 * that waits this long finds a reconnected pool or a fresh verdict, not the same failure.
 */
export const DATABASE_RETRY_AFTER_SEC = 5;
/** Retry-After of a 503 whose error names no better time. */
const DEFAULT_RETRY_AFTER_SEC = 5;

/** Statuses Nest or Fastify raise on their own, mapped onto the broker's codes. */
const CODE_BY_STATUS: Record<number, ErrorCode> = {
  400: ErrorCode.ValidationFailed,
  401: ErrorCode.Unauthorized,
  403: ErrorCode.Forbidden,
  404: ErrorCode.RouteNotFound,
  413: ErrorCode.PayloadTooLarge,
  414: ErrorCode.UriTooLong,
  415: ErrorCode.ValidationFailed,
};

/**
 * Nest's side of the one place errors become HTTP responses (sendError below): every controller
 * route's errors arrive here.
 */
@Catch()
export class ErrorFilter implements ExceptionFilter {
  private readonly logger = new Logger('Errors');

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    sendError(exception, http.getRequest<FastifyRequest>(), http.getResponse<FastifyReply>(), this.logger);
  }
}

/**
 * The one place errors become HTTP responses: `{statusCode, error, message}`. Domain errors
 * carry their code; framework errors are mapped by status; a database that cannot be reached is
 * 503 `database_unavailable` with Retry-After (guarantee 12), its cause logged at warn and never
 * answered (it names the database's host and port); anything else is an internal error, logged
 * once with the request id the caller also receives (never the cause's text, which might hold a
 * secret). Used by ErrorFilter and by the routes Fastify serves without Nest (the token read,
 * see token-read.route.ts).
 */
export function sendError(exception: unknown, request: FastifyRequest, reply: FastifyReply, logger: Pick<Logger, 'error' | 'warn'>): void {
  const body = errorBody(exception, request);
  if (body.error === ErrorCode.DatabaseUnavailable && !(exception instanceof DomainError)) {
    logger.warn({ requestId: request.id, cause: describeDatabaseError(exception) }, 'database unavailable; answered 503');
  } else if (body.statusCode >= 500 && body.error === ErrorCode.Internal) {
    logger.error({ requestId: request.id, err: exception }, 'unhandled error');
  }
  // A 503 always says when to come back: a caller's retry loop should not have to guess.
  const retryAfter = typeof body.retryAfter === 'number' ? body.retryAfter : body.statusCode === 503 ? DEFAULT_RETRY_AFTER_SEC : undefined;
  if (retryAfter !== undefined) void reply.header('retry-after', String(retryAfter));
  void reply.status(body.statusCode).header('content-type', 'application/json; charset=utf-8').send(body);
}

/**
 * The code an error is answered with (the `error` of its body), without building the body: what
 * an audit record gives as the outcome of a request that failed.
 */
export function errorCodeOf(exception: unknown): ErrorCode {
  if (exception instanceof DomainError) return exception.code;
  if (exception instanceof HttpException) return codeForStatus(exception.getStatus());
  if (isDatabaseUnavailable(exception)) return ErrorCode.DatabaseUnavailable;
  if (isFrameworkError(exception)) return frameworkErrorBody(exception).error;
  return ErrorCode.Internal;
}

function errorBody(exception: unknown, request: FastifyRequest): ErrorBody {
  if (exception instanceof DomainError) {
    return { ...exception.details, statusCode: httpStatusOf(exception.code), error: exception.code, message: exception.message };
  }
  if (exception instanceof HttpException) {
    const status = exception.getStatus();
    const code = codeForStatus(status);
    // A 5xx is a failure of ours, answered like an unknown one: its text may hold anything, and
    // the caller needs the request id the log line carries.
    if (code === ErrorCode.Internal) return internalBody(request, status);
    return { statusCode: status, error: code, message: httpMessage(exception, code, request) };
  }
  if (isDatabaseUnavailable(exception)) {
    return {
      statusCode: httpStatusOf(ErrorCode.DatabaseUnavailable),
      error: ErrorCode.DatabaseUnavailable,
      message: 'the database cannot be reached right now; try again shortly',
      retryAfter: DATABASE_RETRY_AFTER_SEC,
    };
  }
  if (isFrameworkError(exception)) return frameworkErrorBody(exception);
  return internalBody(request, httpStatusOf(ErrorCode.Internal));
}

function internalBody(request: FastifyRequest, statusCode: number): ErrorBody {
  return { statusCode, error: ErrorCode.Internal, message: `internal error; quote request id ${request.id} when reporting it`, requestId: request.id };
}

function codeForStatus(status: number): ErrorCode {
  return CODE_BY_STATUS[status] ?? (status >= 500 ? ErrorCode.Internal : ErrorCode.ValidationFailed);
}

/** A 4xx Fastify raised itself (its codes start with FST_). */
function isFrameworkError(exception: unknown): exception is FastifyFrameworkError {
  const error = exception as FastifyFrameworkError | null;
  return typeof error?.statusCode === 'number' && error.statusCode < 500 && error.code?.startsWith('FST_') === true;
}

interface FastifyFrameworkError {
  statusCode?: number;
  code?: string;
  message?: string;
}

/**
 * Fastify's own messages for these quote the whole raw URL, query string included (a connect
 * link's session token, say), and may run to kilobytes: said in our words instead.
 */
const URL_QUOTING_MESSAGES: ReadonlyMap<string, string> = new Map([
  ['FST_ERR_BAD_URL', 'the URL path has a malformed percent-escape'],
  ['FST_ERR_MAX_PARAM_LENGTH', 'a path segment of the URL is too long'],
]);

/**
 * The body for an error Fastify raises itself, before any route runs (a malformed URL, a path
 * parameter over `maxParamLength`): the same shape as every other error. Used by the filter and
 * by the adapter's `frameworkErrors` hook (broker.ts).
 */
export function frameworkErrorBody(error: FastifyFrameworkError): ErrorBody {
  const statusCode = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 400;
  const message = URL_QUOTING_MESSAGES.get(error.code ?? '') ?? error.message ?? 'bad request';
  return { statusCode, error: CODE_BY_STATUS[statusCode] ?? ErrorCode.ValidationFailed, message };
}

function httpMessage(exception: HttpException, code: ErrorCode, request: FastifyRequest): string {
  if (code === ErrorCode.RouteNotFound) return `no route ${request.method} ${clip(request.url.split('?')[0], 200)}`;
  const response = exception.getResponse();
  if (typeof response === 'object' && response !== null && 'message' in response) {
    const message: unknown = response.message;
    if (Array.isArray(message)) return message.join('; ');
    if (typeof message === 'string') return message;
  }
  return exception.message;
}

function clip(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max)}…` : text;
}
