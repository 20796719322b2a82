import { ProviderClient, ProviderIdentity, ProviderSettings, IssuedTokens, providerDefinition } from '@app/providers';
import { Strategy as OAuth2Strategy, StateStore, VerifyCallback } from 'passport-oauth2';
import type { Request } from 'express';
import { OAuthStateStore } from '../oauth-state.store';

/** What a successful callback yields: the tokens as issued and whoever the identity endpoint named. */
export interface ConnectedUser {
  tokens: IssuedTokens;
  identity: ProviderIdentity | null;
  /** Set when the identity endpoint failed; the connection is stored all the same. */
  identityError?: string;
}

/** What the flow's security rests on (and `scope`, which has its own variable): never taken from `<PREFIX>_AUTHORIZE_PARAMS`. */
const RESERVED_AUTHORIZE_PARAMS: ReadonlySet<string> = new Set([
  'state',
  'redirect_uri',
  'client_id',
  'response_type',
  'code_challenge',
  'code_challenge_method',
  'scope',
]);

type AccessTokenCallback = (error: Error | null, accessToken?: string, refreshToken?: string, params?: unknown) => void;

/**
 * The Passport strategy for one provider (one instance per enabled provider, named by its id).
 * passport-oauth2 builds the authorize redirect, runs PKCE and checks `state` through our
 * Postgres-backed store; the token exchange itself goes through ProviderClient, because
 * passport-oauth2 can only POST while Copernica exchanges codes with a GET, and because the
 * broker classifies provider failures the same way everywhere.
 */
export class ProviderOAuthStrategy extends OAuth2Strategy {
  constructor(
    private readonly settings: ProviderSettings,
    callbackURL: string,
    store: OAuthStateStore,
    private readonly client: ProviderClient,
  ) {
    super(
      {
        authorizationURL: settings.endpoints.authorizeUrl,
        tokenURL: settings.endpoints.tokenUrl,
        clientID: settings.clientId,
        clientSecret: settings.clientSecret,
        callbackURL,
        scope: settings.scope ?? undefined,
        store: store as unknown as StateStore,
        pkce: settings.usePkce, // passport-oauth2: true means S256
        state: true,
        passReqToCallback: true,
        skipUserProfile: !providerDefinition(settings.id).identity,
      },
      (_req: Request, _accessToken: string, _refreshToken: string, params: IssuedTokens, profile: IdentityProfile | undefined, done: VerifyCallback) =>
        // profile is undefined for providers without an identity endpoint (skipUserProfile).
        done(null, { tokens: params, identity: profile?.identity ?? null, identityError: profile?.error } satisfies ConnectedUser),
    );
    this.name = settings.id;
    const exchange = (code: string, params: Record<string, string>, callback: AccessTokenCallback): void => {
      this.client
        .exchangeCode(this.settings, { code, redirectUri: params.redirect_uri, codeVerifier: params.code_verifier })
        .then(
          (tokens) => callback(null, tokens.accessToken, tokens.refreshToken ?? undefined, tokens),
          (error: Error) => callback(error),
        );
    };
    // The `oauth` typings declare no success shape for the callback (a null error); the runtime uses one.
    this._oauth2.getOAuthAccessToken = exchange as typeof this._oauth2.getOAuthAccessToken;
  }

  /**
   * `<PREFIX>_AUTHORIZE_PARAMS`, added to the authorize redirect. passport-oauth2 sets its own
   * parameters over these, but not a PKCE one when PKCE is off, so the reserved names are dropped
   * here as well as refused by the config check.
   */
  override authorizationParams(): Record<string, string> {
    const params: Record<string, string> = {};
    for (const [name, value] of Object.entries(this.settings.authorizeParams)) {
      if (!RESERVED_AUTHORIZE_PARAMS.has(name)) params[name] = value;
    }
    return params;
  }

  /** Identity is kept when the provider answers; a failure there must not throw away a fresh grant. */
  override userProfile(accessToken: string, done: (err: unknown, profile?: IdentityProfile) => void): void {
    this.client.fetchIdentity(this.settings, accessToken).then(
      (identity) => done(null, { identity }),
      (error: Error) => done(null, { identity: null, error: error.message }),
    );
  }
}

interface IdentityProfile {
  identity: ProviderIdentity | null;
  error?: string;
}
