import { Caller } from '@app/auth';
import { assertAccountId, Clock, DomainError, ErrorCode } from '@app/common';
import { AppConfig } from '@app/config';
import { ConnectionRecord, ConnectionRepository } from '@app/connections';
import { TokenCipher } from '@app/crypto';
import { isProviderId, ProviderClient, ProviderError, providerDefinition, ProviderSettings } from '@app/providers';
import { issuedTokenSet, RefreshPlanner } from '@app/refresh';
import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { parse as parseCookies, serialize as serializeCookie } from 'cookie';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Authenticator } from 'passport';
import { ConnectContext, RequestWithConnect, StateRefusal } from './connect-context';
import { ConnectFlowRepository, ConnectSession, SessionRefusal } from './connect-flow.repository';
import { OAuthStateStore, sha256, STATE_TTL_MS } from './oauth-state.store';
import { ReturnToPolicy } from './return-to-policy';
import { ConnectedUser, ProviderOAuthStrategy } from './strategies/provider-oauth.strategy';

/** Connect links live 30 minutes at most (DESIGN). */
export const SESSION_TTL_MS = 30 * 60 * 1000;

export type CallbackOutcome =
  | { kind: 'connected'; session: ConnectSession; connection: ConnectionRecord }
  | { kind: 'failed'; session?: ConnectSession; code: string; message: string };

const SESSION_REFUSALS: Record<SessionRefusal, string> = {
  unknown: 'this connect link is not valid; ask the application for a new one',
  used: 'this connect link was already used; ask the application for a new one',
  expired: 'this connect link has expired; ask the application for a new one',
  wrong_provider: 'this connect link is for another provider',
};

const STATE_REFUSALS: Record<StateRefusal, string> = {
  missing: 'the provider sent the browser back without the state of this sign-in',
  unknown_or_used: 'this sign-in was already completed or was never started here; start again',
  expired: 'this sign-in took longer than 10 minutes; start again',
  other_provider: 'this answer belongs to a sign-in with another provider',
  other_browser: 'this sign-in was started in another browser (or its cookie is gone); start again from the same browser',
};

/**
 * The connect flow: one-time connect sessions, the Passport redirect to the provider, and the
 * callback that exchanges the code and stores the connection. Nothing is stored unless the
 * state checks out and the exchange succeeds.
 */
@Injectable()
export class ConnectService implements OnModuleInit {
  private readonly logger = new Logger('Connect');
  private readonly passport = new Authenticator();
  private readonly returnTo: ReturnToPolicy;
  private readonly secureCookies: boolean;
  private readonly stateStore: OAuthStateStore;

  constructor(
    private readonly config: AppConfig,
    private readonly flows: ConnectFlowRepository,
    private readonly connections: ConnectionRepository,
    private readonly client: ProviderClient,
    private readonly cipher: TokenCipher,
    private readonly clock: Clock,
    private readonly planner: RefreshPlanner,
  ) {
    this.returnTo = new ReturnToPolicy(config.connectReturnOrigins);
    this.secureCookies = config.publicUrl.startsWith('https:');
    this.stateStore = new OAuthStateStore(flows, cipher, clock);
  }

  onModuleInit(): void {
    for (const settings of Object.values(this.config.providers)) {
      this.passport.use(settings.id, new ProviderOAuthStrategy(settings, this.callbackUrl(settings.id), this.stateStore, this.client));
    }
  }

  callbackUrl(provider: string): string {
    return `${this.config.publicUrl}/connect/${provider}/callback`;
  }

  /** The provider's settings, or a 400 that says whether it is unknown or just not configured. */
  settings(provider: unknown): ProviderSettings {
    if (!isProviderId(provider)) {
      throw new DomainError(ErrorCode.ProviderUnknown, `unknown provider "${String(provider).slice(0, 40)}"; known: copper, copernica, copyai`);
    }
    const settings = this.config.providers[provider];
    if (!settings) {
      throw new DomainError(
        ErrorCode.ProviderNotConfigured,
        `${providerDefinition(provider).displayName} is not configured on this broker (set ${providerDefinition(provider).envPrefix}_CLIENT_ID)`,
      );
    }
    return settings;
  }

  async createSession(caller: Caller, input: { account: string; provider: string; returnTo?: string }): Promise<{ connectUrl: string; expiresAt: Date }> {
    assertAccountId(input.account);
    const settings = this.settings(input.provider);
    if (input.returnTo !== undefined && !this.returnTo.allows(input.returnTo)) {
      throw new DomainError(
        ErrorCode.ReturnToNotAllowed,
        `returnTo must be an http(s) URL on an origin listed in CONNECT_RETURN_ORIGINS (${this.config.connectReturnOrigins.join(', ')})`,
      );
    }
    const token = randomBytes(32).toString('base64url');
    const expiresAt = new Date(this.clock.nowMs() + SESSION_TTL_MS);
    await this.flows.createSession({
      tokenHash: sha256(token),
      account: input.account,
      provider: settings.id,
      returnTo: input.returnTo ?? null,
      createdBy: caller.name,
      expiresAt,
    });
    return { connectUrl: `${this.config.publicUrl}/connect/${settings.id}?session=${token}`, expiresAt };
  }

  /** Deletes connect sessions and pending authorizations past their lifetime. */
  async purgeExpired(now: Date): Promise<number> {
    return this.flows.deleteExpired(now);
  }

  /**
   * Starts the dance: consumes the one-time session, binds the flow to this browser with a
   * short-lived cookie, and lets Passport redirect to the provider. Writes the raw response.
   */
  async begin(provider: string, sessionToken: unknown, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const settings = this.settings(provider);
    if (typeof sessionToken !== 'string' || !/^[A-Za-z0-9_-]{20,100}$/.test(sessionToken)) {
      throw new DomainError(ErrorCode.SessionInvalid, 'the connect link has no valid session; ask the application for a new one');
    }
    const session = await this.flows.consumeSession(sha256(sessionToken), settings.id, this.clock.now());
    if (typeof session === 'string') throw new DomainError(ErrorCode.SessionInvalid, SESSION_REFUSALS[session]);

    const nonce = randomBytes(32).toString('base64url');
    res.setHeader('set-cookie', this.bindingCookie(settings.id, nonce, STATE_TTL_MS / 1000));
    res.setHeader('cache-control', 'no-store');
    res.setHeader('referrer-policy', 'no-referrer');
    const context: ConnectContext = { provider: settings.id, browserNonce: nonce, starting: { session, browserHash: sha256(nonce) } };
    const outcome = await this.runPassport(settings.id, Object.assign(req, { tbConnect: context, query: {} }), res);
    if (outcome.kind !== 'redirected') {
      throw outcome.kind === 'error' ? outcome.error : new Error(`unexpected passport outcome ${outcome.kind}`);
    }
  }

  /**
   * Finishes the dance from the provider's callback parameters (query or form body). Never
   * throws for a user-facing failure: the outcome says what happened, and nothing is stored
   * unless it is `connected`.
   */
  async complete(provider: string, params: Record<string, unknown>, req: IncomingMessage, res: ServerResponse): Promise<CallbackOutcome> {
    const settings = this.settings(provider);
    const context: ConnectContext = { provider: settings.id, browserNonce: this.browserNonce(req, settings.id) };
    const request = Object.assign(req, { tbConnect: context, query: { ...params }, body: {} }) as RequestWithConnect;
    // The binding cookie is single-use like the state it guards.
    res.setHeader('set-cookie', this.bindingCookie(settings.id, '', 0));

    if (typeof params.error === 'string' || typeof params.code !== 'string' || params.code === '') {
      // Consume the state too, so the flow cannot be resumed, and learn where to send the user.
      if (typeof params.state === 'string') await this.consumeState(request, params.state);
      // Where the state belonged to this flow but the browser check failed, the user still goes back to the product.
      const session = context.refusal === 'other_browser' || context.refusal === 'expired' || !context.refusal ? context.session : undefined;
      if (typeof params.error === 'string') {
        const code = params.error === 'access_denied' ? ErrorCode.AccessDenied : ErrorCode.ExchangeFailed;
        const message =
          params.error === 'access_denied'
            ? `access was declined at ${providerDefinition(settings.id).displayName}`
            : `${providerDefinition(settings.id).displayName} returned an error (${String(params.error).slice(0, 64)})`;
        return { kind: 'failed', session, code, message };
      }
      return { kind: 'failed', session, code: ErrorCode.StateInvalid, message: `${providerDefinition(settings.id).displayName} sent the browser back without an authorization code` };
    }

    const outcome = await this.runPassport(settings.id, request, res);
    if (outcome.kind === 'success') {
      const session = context.session;
      if (!session) return { kind: 'failed', code: ErrorCode.StateInvalid, message: STATE_REFUSALS.unknown_or_used };
      const user = outcome.user;
      if (user.identityError) this.logger.warn(`${settings.id} identity lookup failed for account ${session.account}: ${user.identityError}`);
      const now = this.clock.now();
      const tokens = issuedTokenSet(user.tokens, now);
      tokens.scope ??= settings.scope;
      const connection = await this.connections.saveConnected({
        account: session.account,
        provider: settings.id,
        tokens,
        identity: user.identity,
        nextRefreshAt: this.planner.nextRefreshAt(tokens.expiresAt, tokens.refreshToken !== null, now, tokens.refreshTokenExpiresAt ?? null),
      });
      this.logger.log(`connected ${settings.id} for account ${session.account} (session by ${session.createdBy})`);
      return { kind: 'connected', session, connection };
    }
    if (outcome.kind === 'fail') {
      const refusal = context.refusal ?? 'unknown_or_used';
      this.logger.warn(`${settings.id} callback refused: state ${refusal}`);
      return { kind: 'failed', session: refusal === 'other_browser' || refusal === 'expired' ? context.session : undefined, code: ErrorCode.StateInvalid, message: STATE_REFUSALS[refusal] };
    }
    if (outcome.kind === 'error') {
      const cause = (outcome.error as { oauthError?: unknown }).oauthError ?? outcome.error;
      const message = cause instanceof ProviderError ? cause.message : 'the code could not be exchanged for a token';
      if (cause instanceof ProviderError) this.logger.warn(`${settings.id} code exchange failed: ${message}`);
      else this.logger.error({ err: cause }, `${settings.id} callback failed unexpectedly`);
      return { kind: 'failed', session: context.session, code: ErrorCode.ExchangeFailed, message: `${providerDefinition(settings.id).displayName} did not issue a token: ${message}` };
    }
    return { kind: 'failed', session: context.session, code: ErrorCode.StateInvalid, message: STATE_REFUSALS.unknown_or_used };
  }

  private bindingCookie(provider: string, value: string, maxAgeSec: number): string {
    return serializeCookie(`tb_connect_${provider}`, value, {
      httpOnly: true,
      secure: this.secureCookies,
      sameSite: 'lax',
      path: `/connect/${provider}`,
      maxAge: maxAgeSec,
    });
  }

  private browserNonce(req: IncomingMessage, provider: string): string | undefined {
    const header = req.headers.cookie;
    if (!header) return undefined;
    return parseCookies(header)[`tb_connect_${provider}`] || undefined;
  }

  /** Checks and consumes a callback's state without exchanging anything (a refused or code-less callback). */
  private consumeState(request: RequestWithConnect, state: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.stateStore.verify(request, state, {}, (error) => (error ? reject(error) : resolve()));
    });
  }

  /** Runs the provider's strategy on the raw Node request/response (Passport writes redirects to it). */
  private runPassport(
    provider: string,
    req: RequestWithConnect,
    res: ServerResponse,
  ): Promise<
    | { kind: 'redirected' }
    | { kind: 'success'; user: ConnectedUser }
    | { kind: 'fail' }
    | { kind: 'error'; error: unknown }
  > {
    return new Promise((resolve) => {
      res.once('finish', () => resolve({ kind: 'redirected' }));
      const middleware = this.passport.authenticate(provider, { session: false }, (error: unknown, user: ConnectedUser | false) => {
        if (error) resolve({ kind: 'error', error });
        else if (user) resolve({ kind: 'success', user });
        else resolve({ kind: 'fail' });
      }) as (req: IncomingMessage, res: ServerResponse, next: (error?: unknown) => void) => void;
      middleware(req, res, (error?: unknown) => resolve({ kind: 'error', error }));
    });
  }

}
