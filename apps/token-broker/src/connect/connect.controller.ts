import { Public } from '@app/auth';
import { DomainError, ErrorCode } from '@app/common';
import { CallbackOutcome, callbackBouncePage, ConnectService, ConnectSession, failedPage, connectedPage, KeySubmission, PAGE_HEADERS } from '@app/connect';
import { AuditLog } from '@app/observability';
import { isProviderId, providerDefinition } from '@app/providers';
import { describeDatabaseError, isDatabaseUnavailable } from '@app/database';
import { DATABASE_RETRY_AFTER_SEC, errorCodeOf } from '../http/error.filter';
import { httpStatusOf } from '../http/http-status';
import { Controller, Get, Logger, Param, Post, Req, Res } from '@nestjs/common';
import { ApiExcludeController } from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { ServerResponse } from 'node:http';

/**
 * Browser-facing routes of the connect flow. Public by design: the one-time session link and
 * the OAuth state are what authorise them. Answers are HTML pages or redirects, never JSON.
 */
@ApiExcludeController()
@Controller('connect/:provider')
@Public()
export class ConnectController {
  private readonly logger = new Logger('Connect');

  constructor(
    private readonly connect: ConnectService,
    private readonly audit: AuditLog,
  ) {}

  /**
   * The connect link: a confirmation page, never the redirect. Fastify answers HEAD with this
   * handler too, which is why it must use nothing up: link scanners and unfurlers fetch links.
   */
  @Get()
  async confirm(@Param('provider') provider: string, @Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    reply.hijack();
    const session = (request.query as Record<string, unknown>).session;
    try {
      const { html, headers } = await this.connect.confirmation(provider, session, request.raw);
      send(reply.raw, 200, html, headers);
    } catch (error) {
      this.sendFailure(reply.raw, provider, error);
    }
  }

  /** The confirmation page's button: uses the one-time session up and redirects to the provider. */
  @Post()
  async begin(@Param('provider') provider: string, @Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    reply.hijack();
    try {
      await this.connect.begin(provider, formBody(request), request.raw, reply.raw);
    } catch (error) {
      this.sendFailure(reply.raw, provider, error);
    }
  }

  /**
   * The API key form of a link made with authMode api_key: a refused or incomplete key shows the
   * form again (never with the key in it); a stored one ends at returnTo like the OAuth flow.
   * Audited as credential.store by the end user: stored, rejected, or the error code.
   */
  @Post('key')
  async submitKey(@Param('provider') provider: string, @Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    reply.hijack();
    let outcome: KeySubmission;
    try {
      outcome = await this.connect.submitKey(provider, formBody(request), request.raw, reply.raw);
    } catch (error) {
      this.auditKey(request, provider, undefined, errorCodeOf(error));
      this.sendFailure(reply.raw, provider, error);
      return;
    }
    if (outcome.kind === 'retry') {
      this.auditKey(request, provider, outcome.session, outcome.code);
      send(reply.raw, outcome.status, outcome.html, outcome.headers);
      return;
    }
    if (outcome.kind === 'connected') {
      this.auditKey(request, provider, outcome.session, 'stored', { verification: outcome.verification });
      this.sendBack(reply.raw, provider, outcome.session, { kind: 'connected' });
      return;
    }
    this.auditKey(request, provider, outcome.session, outcome.code);
    this.sendBack(reply.raw, provider, outcome.session, { kind: 'failed', code: outcome.code, message: outcome.message });
  }

  @Get('callback')
  async callbackGet(@Param('provider') provider: string, @Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    await this.finish(provider, request.query as Record<string, unknown>, request, reply);
  }

  /**
   * A provider that answers with a cross-site form POST (ConnectService.answersWithFormPost)
   * sends no SameSite=Lax binding cookie with it: it is bounced to the GET callback, a same-site
   * navigation that does. Any other provider's POST without the cookie is not how it answers,
   * and goes to the binding check like any callback (which refuses it).
   */
  @Post('callback')
  async callbackPost(@Param('provider') provider: string, @Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    const body = formBody(request);
    if (isProviderId(provider) && this.connect.answersWithFormPost(provider) && !this.connect.hasBindingCookie(request.raw, provider)) {
      reply.hijack();
      const query = new URLSearchParams();
      for (const key of ['code', 'state', 'iss', 'error', 'error_description']) {
        if (typeof body[key] === 'string') query.set(key, body[key]);
      }
      send(reply.raw, 200, callbackBouncePage(`/connect/${provider}/callback?${query.toString()}`));
      return;
    }
    await this.finish(provider, body, request, reply);
  }

  private async finish(provider: string, params: Record<string, unknown>, request: FastifyRequest, reply: FastifyReply): Promise<void> {
    reply.hijack();
    let outcome: CallbackOutcome;
    try {
      outcome = await this.connect.complete(provider, params, request.raw, reply.raw);
    } catch (error) {
      this.auditCallback(request, provider, { kind: 'failed', code: errorCodeOf(error) });
      this.sendFailure(reply.raw, provider, error);
      return;
    }
    this.auditCallback(request, provider, outcome);
    const returnTo = outcome.session?.returnTo;
    if (returnTo) {
      const target = new URL(returnTo);
      target.searchParams.set('status', outcome.kind === 'connected' ? 'connected' : 'error');
      if (outcome.kind === 'failed') target.searchParams.set('error', outcome.code);
      if (outcome.kind === 'failed' && outcome.providerError) target.searchParams.set('providerError', outcome.providerError);
      target.searchParams.set('account', outcome.session!.account);
      target.searchParams.set('provider', provider);
      reply.raw.writeHead(302, { location: target.toString(), 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
      reply.raw.end();
      return;
    }
    const name = displayName(provider);
    if (outcome.kind === 'connected') send(reply.raw, 200, connectedPage(name, outcome.session.account));
    else send(reply.raw, httpStatusOf(outcome.code), failedPage(name, outcome.code, outcome.message));
  }

  /**
   * Back to the product: `returnTo?status=connected|error&error=…&account=…&provider=…` when the
   * link named one, else a small page saying what happened.
   */
  private sendBack(res: ServerResponse, provider: string, session: ConnectSession | undefined, outcome: { kind: 'connected' } | { kind: 'failed'; code: ErrorCode; message: string }): void {
    if (session?.returnTo) {
      const target = new URL(session.returnTo);
      target.searchParams.set('status', outcome.kind === 'connected' ? 'connected' : 'error');
      if (outcome.kind === 'failed') target.searchParams.set('error', outcome.code);
      target.searchParams.set('account', session.account);
      target.searchParams.set('provider', provider);
      res.writeHead(302, { location: target.toString(), 'cache-control': 'no-store', 'referrer-policy': 'no-referrer' });
      res.end();
      return;
    }
    const name = displayName(provider);
    if (outcome.kind === 'connected') send(res, 200, connectedPage(name, session?.account ?? ''));
    else send(res, httpStatusOf(outcome.code), failedPage(name, outcome.code, outcome.message));
  }

  /** `credential.store` by the end user: stored, rejected (the provider refused the key), or the error code. */
  private auditKey(request: FastifyRequest, provider: string, session: ConnectSession | undefined, outcome: string, detail?: Record<string, unknown>): void {
    this.audit.record({
      action: 'credential.store',
      actor: 'end_user',
      actorKind: 'end_user',
      account: session?.account ?? null,
      provider,
      outcome: outcome === String(ErrorCode.CredentialRejected) ? 'rejected' : outcome,
      requestId: String(request.id),
      detail,
    });
  }

  /** `connect.callback`: connected, denied (the user said no at the provider) or failed with its code. */
  private auditCallback(request: FastifyRequest, provider: string, outcome: Pick<CallbackOutcome, 'kind'> & { code?: ErrorCode; session?: ConnectSession; providerError?: string }): void {
    const denied = outcome.code === ErrorCode.AccessDenied;
    this.audit.record({
      action: 'connect.callback',
      actor: 'end_user',
      actorKind: 'end_user',
      account: outcome.session?.account ?? null,
      provider,
      outcome: outcome.kind === 'connected' ? 'connected' : denied ? 'denied' : 'failed',
      requestId: String(request.id),
      detail: outcome.kind === 'connected' || denied ? undefined : { code: outcome.code, ...(outcome.providerError ? { providerError: outcome.providerError } : {}) },
    });
  }

  private sendFailure(res: ServerResponse, provider: string, error: unknown): void {
    const name = displayName(provider);
    if (error instanceof DomainError) {
      send(res, httpStatusOf(error.code), failedPage(name, error.code, error.message));
      return;
    }
    if (isDatabaseUnavailable(error)) {
      // Guarantee 12: an outage is a 503 the browser may retry, not an internal error; nothing was stored.
      this.logger.warn(`connect flow: database unavailable (${describeDatabaseError(error)})`);
      send(
        res,
        503,
        failedPage(name, ErrorCode.DatabaseUnavailable, 'The service is briefly unavailable. Nothing was stored; try again in a moment.'),
        { ...PAGE_HEADERS, 'retry-after': String(DATABASE_RETRY_AFTER_SEC) },
      );
      return;
    }
    this.logger.error({ err: error }, 'connect flow failed');
    send(res, 500, failedPage(name, ErrorCode.Internal, 'Something went wrong on our side.'));
  }
}

/** What a page calls the provider in the URL; not every failure page is about a provider the registry knows. */
function displayName(provider: string): string {
  return isProviderId(provider) ? providerDefinition(provider).displayName : 'the provider';
}

function formBody(request: FastifyRequest): Record<string, unknown> {
  return (typeof request.body === 'object' && request.body !== null ? request.body : {}) as Record<string, unknown>;
}

function send(res: ServerResponse, status: number, html: string, headers: Record<string, string> = PAGE_HEADERS): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, headers);
  res.end(html);
}
