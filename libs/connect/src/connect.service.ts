import { Caller } from '@app/auth';
import { assertAccountId, Clock, DomainError, ErrorCode } from '@app/common';
import { AppConfig } from '@app/config';
import { AuthMode, ConnectionRecord, ConnectionRepository } from '@app/connections';
import { FORM_FIELDS, StaticCredentialService } from '@app/credentials';
import { TokenCipher } from '@app/crypto';
import { isDatabaseUnavailable } from '@app/database';
import { isProviderId, ProviderClient, ProviderError, providerDefinition, ProviderId, ProviderSettings, unknownProviderError } from '@app/providers';
import { issuedTokenSet, RefreshPlanner } from '@app/refresh';
import { Injectable, Logger, OnModuleInit } from '@nestjs/common';
import { parse as parseCookies, serialize as serializeCookie } from 'cookie';
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Authenticator } from 'passport';
import { ConnectContext, RequestWithConnect, StateRefusal } from './connect-context';
import { ConnectFlowRepository, ConnectSession, SessionRefusal } from './connect-flow.repository';
import { apiKeyPage, apiKeyPageHeaders, confirmPage, confirmPageHeaders } from './connect-pages';
import { OAuthStateStore, sha256, STATE_LENGTH, STATE_TTL_MS } from './oauth-state.store';
import { ReturnToPolicy } from './return-to-policy';
import { ConnectedUser, ProviderOAuthStrategy } from './strategies/provider-oauth.strategy';
import { ConnectionCache } from '@app/tokens';

/** Connect links live 30 minutes at most (DESIGN). */
export const SESSION_TTL_MS = 30 * 60 * 1000;

export type CallbackOutcome =
  | { kind: 'connected'; session: ConnectSession; connection: ConnectionRecord }
  | {
      kind: 'failed';
      session?: ConnectSession;
      code: ErrorCode;
      message: string;
      /** With `provider_error`: the provider's own `error` code, only when it is a plain code (PROVIDER_ERROR_CODE). */
      providerError?: string;
    };

/** What became of an API key the end user submitted through the connect form. */
export type KeySubmission =
  | { kind: 'connected'; session: ConnectSession; connection: ConnectionRecord; verification: string }
  /** The form again, with why (the key never in it): `status` 400 (a field), 422 (refused) or 503 (could not check). */
  | { kind: 'retry'; session: ConnectSession; status: number; code: ErrorCode; html: string; headers: Record<string, string> }
  /** The link is used up (too many refused keys, or used meanwhile): back to the product with the error. */
  | { kind: 'failed'; session?: ConnectSession; code: ErrorCode; message: string };

/** Keys the provider may refuse through one link before the link is used up. */
export const MAX_KEY_ATTEMPTS = 5;

/** A provider's `error` is repeated to the product, shown and logged only when it looks like an OAuth error code. */
export const PROVIDER_ERROR_CODE = /^[a-z_]{1,64}$/;

const SESSION_TOKEN = /^[A-Za-z0-9_-]{20,100}$/;
/** The confirmation page's nonce: 32 random bytes, base64url. */
const CONFIRM_NONCE = /^[A-Za-z0-9_-]{43}$/;

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
  unreadable: 'this sign-in could not be resumed on our side; start again',
};

/** Refusals after which the state was this flow's own: the user is sent back to the product with the error. */
const REFUSALS_WITH_SESSION: ReadonlySet<StateRefusal | undefined> = new Set([undefined, 'other_browser', 'expired', 'unreadable']);

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
    private readonly credentials: StaticCredentialService,
    private readonly cache: ConnectionCache,
  ) {
    this.returnTo = new ReturnToPolicy(config.connectReturnOrigins);
    this.secureCookies = config.publicUrl.startsWith('https:');
    this.stateStore = new OAuthStateStore(flows, cipher, clock);
  }

  onModuleInit(): void {
    for (const settings of Object.values(this.config.providers)) {
      // A provider that drops a short state sends users back without a code and without an error:
      // if the state ever shrinks below what a provider needs, the broker must not start.
      const { minStateLength = 0, displayName } = providerDefinition(settings.id);
      if (STATE_LENGTH < minStateLength) throw new Error(`${displayName} needs a state of at least ${minStateLength} characters; ours has ${STATE_LENGTH}`);
      this.passport.use(settings.id, new ProviderOAuthStrategy(settings, this.callbackUrl(settings.id), this.stateStore, this.client));
    }
  }

  callbackUrl(provider: string): string {
    return `${this.config.publicUrl}/connect/${provider}/callback`;
  }

  /** A provider id the registry knows, or 400 provider_unknown. */
  private providerId(provider: unknown): ProviderId {
    if (!isProviderId(provider)) throw unknownProviderError(provider);
    return provider;
  }

  /** The provider's settings, or a 400 that says whether it is unknown or just not configured. */
  settings(provider: unknown): ProviderSettings {
    if (!isProviderId(provider)) throw unknownProviderError(provider);
    const settings = this.config.providers[provider];
    if (!settings) {
      throw new DomainError(
        ErrorCode.ProviderNotConfigured,
        `${providerDefinition(provider).displayName} is not configured on this broker (set ${providerDefinition(provider).envPrefix}_CLIENT_ID)`,
      );
    }
    return settings;
  }

  async createSession(
    caller: Caller,
    input: { account: string; provider: string; returnTo?: string; authMode?: AuthMode },
  ): Promise<{ connectUrl: string; expiresAt: Date }> {
    assertAccountId(input.account);
    const authMode = input.authMode ?? AuthMode.OAuth2;
    // An API key needs no OAuth client on this broker: Copy.ai publishes no OAuth at all.
    const provider = authMode === AuthMode.ApiKey ? this.providerId(input.provider) : this.settings(input.provider).id;
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
      provider,
      returnTo: input.returnTo ?? null,
      createdBy: caller.name,
      expiresAt,
      authMode,
    });
    return { connectUrl: `${this.config.publicUrl}/connect/${provider}?session=${token}`, expiresAt };
  }

  /** Deletes connect sessions and pending authorizations past their lifetime. */
  async purgeExpired(now: Date): Promise<number> {
    return this.flows.deleteExpired(now);
  }

  /**
   * The connect link itself (GET, and HEAD through it): the confirmation page naming the
   * provider and the account, with the form that starts the flow. Uses nothing up, so a link
   * scanner or an unfurler that fetches the link leaves it working. The page's cookie, echoed in
   * the form, is what lets only this page's form start the flow (no cross-site POST can).
   */
  async confirmation(provider: string, sessionToken: unknown, req: IncomingMessage): Promise<{ html: string; headers: Record<string, string> }> {
    const id = this.providerId(provider);
    const token = this.sessionToken(sessionToken);
    const session = await this.flows.findSession(sha256(token), id, this.clock.now());
    if (typeof session === 'string') throw new DomainError(ErrorCode.SessionInvalid, SESSION_REFUSALS[session]);
    // Kept when already set, so two tabs of this page both work.
    const present = this.cookie(req, this.confirmCookieName(id));
    const nonce = present && CONFIRM_NONCE.test(present) ? present : randomBytes(32).toString('base64url');
    const remainingSec = Math.max(1, Math.floor((session.expiresAt.getTime() - this.clock.nowMs()) / 1000));
    if (session.authMode === AuthMode.ApiKey) {
      return {
        html: this.apiKeyForm(id, session, token, nonce),
        headers: { ...apiKeyPageHeaders(session.returnTo), 'set-cookie': this.confirmCookie(id, nonce, remainingSec) },
      };
    }
    const settings = this.settings(provider);
    return {
      html: confirmPage({
        providerName: providerDefinition(settings.id).displayName,
        account: session.account,
        action: `/connect/${settings.id}`,
        fields: { session: token, confirm: nonce },
      }),
      headers: { ...confirmPageHeaders(settings.endpoints.authorizeUrl), 'set-cookie': this.confirmCookie(settings.id, nonce, remainingSec) },
    };
  }

  /**
   * Starts the dance from the confirmation page's form: checks the form came from that page in
   * this browser, consumes the one-time session, binds the flow to this browser with a
   * short-lived cookie, and lets Passport redirect to the provider. Writes the raw response.
   */
  async begin(provider: string, form: Record<string, unknown>, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const settings = this.settings(provider);
    const token = this.sessionToken(form.session);
    this.assertFromConnectPage(settings.id, form, req, 'this confirmation did not come from the connect page in this browser');
    const session = await this.flows.consumeSession(sha256(token), settings.id, this.clock.now(), AuthMode.OAuth2);
    if (typeof session === 'string') throw new DomainError(ErrorCode.SessionInvalid, SESSION_REFUSALS[session]);

    const nonce = randomBytes(32).toString('base64url');
    res.setHeader('set-cookie', [this.bindingCookie(settings.id, nonce, STATE_TTL_MS / 1000), this.confirmCookie(settings.id, '', 0)]);
    res.setHeader('cache-control', 'no-store');
    res.setHeader('referrer-policy', 'no-referrer');
    const context: ConnectContext = { provider: settings.id, browserNonce: nonce, starting: { session, browserHash: sha256(nonce) } };
    const outcome = await this.runPassport(settings.id, Object.assign(req, { tbConnect: context, query: {} }), res);
    if (outcome.kind !== 'redirected') {
      throw outcome.kind === 'error' ? outcome.error : new Error(`unexpected passport outcome ${outcome.kind}`);
    }
  }

  /**
   * The API key form's submission: bound to the browser that opened the link exactly as the
   * OAuth confirmation is (the page's cookie echoed in the form, never cross-site), checked with
   * the provider as it will be applied, and stored only if the link is still unused at that
   * moment (the link is used up in the same step, so it stays one-time). A refused key shows the
   * form again with the reason and counts against the link (MAX_KEY_ATTEMPTS); a key is never
   * written into a page. Sets the cookie headers on `res`; the caller writes the answer.
   */
  async submitKey(provider: string, form: Record<string, unknown>, req: IncomingMessage, res: ServerResponse): Promise<KeySubmission> {
    const id = this.providerId(provider);
    const token = this.sessionToken(form.session);
    this.assertFromConnectPage(id, form, req, 'this form was not sent from the connect page in this browser');
    const session = await this.flows.findSession(sha256(token), id, this.clock.now());
    if (typeof session === 'string' || session.authMode !== AuthMode.ApiKey) {
      throw new DomainError(ErrorCode.SessionInvalid, SESSION_REFUSALS[typeof session === 'string' ? session : 'unknown']);
    }
    const fields = Object.fromEntries(FORM_FIELDS.filter((name) => form[name] !== undefined).map((name) => [name, form[name]]));
    const userEmail = typeof form.userEmail === 'string' ? form.userEmail.slice(0, 320) : undefined;
    const retry = (status: number, code: ErrorCode, message: string): KeySubmission => ({
      kind: 'retry',
      session,
      status,
      code,
      html: this.apiKeyForm(id, session, token, String(form.confirm), { userEmail, error: message }),
      headers: apiKeyPageHeaders(session.returnTo),
    });
    try {
      const input = this.credentials.parse(id, fields, FORM_FIELDS);
      const stored = await this.credentials.store(session.account, id, { ...input, verify: true }, {
        // After the check, before anything is written: the link is used up here, once.
        beforeStore: async () => {
          const used = await this.flows.consumeSession(sha256(token), id, this.clock.now(), AuthMode.ApiKey);
          if (typeof used === 'string') throw new DomainError(ErrorCode.SessionInvalid, SESSION_REFUSALS[used]);
        },
      });
      res.setHeader('set-cookie', this.confirmCookie(id, '', 0));
      this.logger.log(`connected ${id} for account ${session.account} with an API key (session by ${session.createdBy})`);
      return { kind: 'connected', session, connection: stored.connection, verification: stored.verification };
    } catch (error) {
      if (!(error instanceof DomainError)) throw error;
      const name = providerDefinition(id).displayName;
      if (error.code === ErrorCode.ValidationFailed) return retry(400, error.code, `${this.formMessage(error.message)}.`);
      if (error.code === ErrorCode.ProviderUnavailable) {
        return retry(503, error.code, `${name} could not be asked about the key just now. Nothing was stored; try again in a moment.`);
      }
      if (error.code === ErrorCode.SessionInvalid) return { kind: 'failed', session, code: error.code, message: error.message };
      if (error.code !== ErrorCode.CredentialRejected) throw error;
      const attempts = await this.flows.recordFailedAttempt(session.id, this.clock.now(), MAX_KEY_ATTEMPTS);
      if (attempts >= MAX_KEY_ATTEMPTS) {
        res.setHeader('set-cookie', this.confirmCookie(id, '', 0));
        return { kind: 'failed', session, code: error.code, message: `${name} refused ${MAX_KEY_ATTEMPTS} keys through this link; ask the application for a new one` };
      }
      return retry(422, error.code, `${name} did not accept this key. Check it (and the email) and try again: ${MAX_KEY_ATTEMPTS - attempts} attempt(s) left. Nothing was stored.`);
    }
  }

  /**
   * Finishes the dance from the provider's callback parameters (query or form body). Never
   * throws for a user-facing failure: the outcome says what happened, and nothing is stored
   * unless it is `connected`.
   */
  async complete(provider: string, params: Record<string, unknown>, req: IncomingMessage, res: ServerResponse): Promise<CallbackOutcome> {
    const settings = this.settings(provider);
    const context: ConnectContext = { provider: settings.id, browserNonce: this.cookie(req, this.bindingCookieName(settings.id)) };
    const request = Object.assign(req, { tbConnect: context, query: { ...params }, body: {} }) as RequestWithConnect;
    // The binding cookie is single-use like the state it guards.
    res.setHeader('set-cookie', this.bindingCookie(settings.id, '', 0));
    const name = providerDefinition(settings.id).displayName;
    // RFC 9207: with an issuer configured, only an answer naming it is from the server we sent the user to.
    const issuerMatches = settings.issuer === null || params.iss === settings.issuer;

    if (!issuerMatches || typeof params.error === 'string' || typeof params.code !== 'string' || params.code === '') {
      // Consume the state too, so the flow cannot be resumed, and learn where to send the user.
      if (typeof params.state === 'string') await this.consumeState(request, params.state);
      // Where the state belonged to this flow but the browser check failed, the user still goes back to the product.
      const session = REFUSALS_WITH_SESSION.has(context.refusal) ? context.session : undefined;
      if (!issuerMatches) {
        this.logger.warn(`${settings.id} callback refused: ${typeof params.iss === 'string' ? 'its iss is not' : 'it carries no iss, expected'} the configured issuer`);
        return {
          kind: 'failed',
          session,
          code: ErrorCode.IssuerMismatch,
          message: `this answer did not come from the authorization server configured for ${name}; start again`,
        };
      }
      if (params.error === 'access_denied') {
        return { kind: 'failed', session, code: ErrorCode.AccessDenied, message: `access was declined at ${name}` };
      }
      if (typeof params.error === 'string') {
        const providerError = PROVIDER_ERROR_CODE.test(params.error) ? params.error : undefined;
        this.logger.warn(
          providerError
            ? `${settings.id} answered the authorization with error ${providerError}`
            : `${settings.id} answered the authorization with an error that is not a plain error code (not logged)`,
        );
        const message = providerError ? `${name} returned an error (${providerError})` : `${name} returned an error`;
        return { kind: 'failed', session, code: ErrorCode.ProviderError, message, providerError };
      }
      return { kind: 'failed', session, code: ErrorCode.StateInvalid, message: `${name} sent the browser back without an authorization code` };
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
      // Other replicas drop their copy by NOTIFY; this one must not serve the replaced connection meanwhile.
      this.cache.invalidate(session.account);
      this.logger.log(`connected ${settings.id} for account ${session.account} (session by ${session.createdBy})`);
      return { kind: 'connected', session, connection };
    }
    if (outcome.kind === 'fail') {
      const refusal = context.refusal ?? 'unknown_or_used';
      this.logger.warn(`${settings.id} callback refused: state ${refusal}${context.refusalDetail ? ` (${context.refusalDetail})` : ''}`);
      return {
        kind: 'failed',
        session: context.refusal && REFUSALS_WITH_SESSION.has(refusal) ? context.session : undefined,
        code: ErrorCode.StateInvalid,
        message: STATE_REFUSALS[refusal],
      };
    }
    if (outcome.kind === 'error') {
      const cause = (outcome.error as { oauthError?: unknown }).oauthError ?? outcome.error;
      // The state could not be checked at all: not the provider's fault, and the browser may try again.
      if (isDatabaseUnavailable(cause)) throw cause;
      const message = cause instanceof ProviderError ? cause.message : 'the code could not be exchanged for a token';
      if (cause instanceof ProviderError) this.logger.warn(`${settings.id} code exchange failed: ${message}`);
      else this.logger.error({ err: cause }, `${settings.id} callback failed unexpectedly`);
      return { kind: 'failed', session: context.session, code: ErrorCode.ExchangeFailed, message: `${providerDefinition(settings.id).displayName} did not issue a token: ${message}` };
    }
    return { kind: 'failed', session: context.session, code: ErrorCode.StateInvalid, message: STATE_REFUSALS.unknown_or_used };
  }

  private apiKeyForm(provider: ProviderId, session: ConnectSession, token: string, nonce: string, extra: { userEmail?: string; error?: string } = {}): string {
    const definition = providerDefinition(provider);
    return apiKeyPage({
      providerName: definition.displayName,
      account: session.account,
      hint: definition.staticCredential.hint,
      action: `/connect/${provider}/key`,
      fields: { session: token, confirm: nonce },
      askEmail: definition.staticCredential.userEmail === 'required',
      ...extra,
    });
  }

  /** A validation message as the form says it: the problems, without the API's field jargon where it reads badly. */
  private formMessage(message: string): string {
    return message.replace('apiKey is required', 'Enter the API key').replace(/^userEmail /, 'The email ').replace('; userEmail ', '; the email ');
  }

  /**
   * The form (the confirmation page's button, or the API key form) came from this broker's page
   * in this browser: its cookie echoed, and not sent cross-site. `refusal` says which form it was.
   */
  private assertFromConnectPage(
    provider: string,
    form: Record<string, unknown>,
    req: IncomingMessage,
    refusal: string,
  ): void {
    const presented = this.cookie(req, this.confirmCookieName(provider));
    const echoed = form.confirm;
    if (
      req.headers['sec-fetch-site'] === 'cross-site' ||
      !presented ||
      typeof echoed !== 'string' ||
      !timingSafeEqual(sha256(presented), sha256(echoed))
    ) {
      throw new DomainError(ErrorCode.SessionInvalid, `${refusal}; open the link from the application again`);
    }
  }

  /**
   * The browser-binding cookie's name: `__Host-` prefixed behind https, which makes the browser
   * insist on Secure, Path=/ and no Domain, so no sibling subdomain can plant or shadow it.
   */
  bindingCookieName(provider: string): string {
    return `${this.secureCookies ? '__Host-' : ''}tb_connect_${provider}`;
  }

  /**
   * Whether the provider sends the browser back with a cross-site form POST: its definition says
   * so (Copper), or this broker asked for it with `response_mode=form_post` in
   * `<PREFIX>_AUTHORIZE_PARAMS` (OAuth 2.0 Form Post Response Mode).
   */
  answersWithFormPost(provider: ProviderId): boolean {
    return providerDefinition(provider).callback === 'form_post' || this.config.providers[provider]?.authorizeParams.response_mode === 'form_post';
  }

  /** Whether the request carries this provider's binding cookie (Copper's cross-site POST does not). */
  hasBindingCookie(req: IncomingMessage, provider: string): boolean {
    return this.cookie(req, this.bindingCookieName(provider)) !== undefined;
  }

  private confirmCookieName(provider: string): string {
    return `${this.secureCookies ? '__Host-' : ''}tb_confirm_${provider}`;
  }

  /** SameSite=Lax: the provider's redirect back to the callback is a cross-site top-level GET that must carry it. */
  private bindingCookie(provider: string, value: string, maxAgeSec: number): string {
    return serializeCookie(this.bindingCookieName(provider), value, {
      httpOnly: true,
      secure: this.secureCookies,
      sameSite: 'lax',
      path: this.secureCookies ? '/' : `/connect/${provider}`,
      maxAge: maxAgeSec,
    });
  }

  /**
   * Echoed by the confirmation form. SameSite=Lax (set explicitly, so no browser's "Lax unless
   * recent" POST allowance applies) keeps it off any cross-site POST, while a second tab opened
   * from an email still finds it and reuses it.
   */
  private confirmCookie(provider: string, value: string, maxAgeSec: number): string {
    return serializeCookie(this.confirmCookieName(provider), value, {
      httpOnly: true,
      secure: this.secureCookies,
      sameSite: 'lax',
      path: this.secureCookies ? '/' : `/connect/${provider}`,
      maxAge: maxAgeSec,
    });
  }

  private cookie(req: IncomingMessage, name: string): string | undefined {
    const header = req.headers.cookie;
    if (!header) return undefined;
    return parseCookies(header)[name] || undefined;
  }

  private sessionToken(value: unknown): string {
    if (typeof value !== 'string' || !SESSION_TOKEN.test(value)) {
      throw new DomainError(ErrorCode.SessionInvalid, 'the connect link has no valid session; ask the application for a new one');
    }
    return value;
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
