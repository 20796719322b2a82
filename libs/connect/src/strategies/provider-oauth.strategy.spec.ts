/**
 * The authorize redirect the strategy builds: `<PROVIDER>_AUTHORIZE_PARAMS` are added, and
 * never replace what the flow's security rests on, even if the config check let one through.
 */
import { ProviderClient, ProviderSettings } from '@app/providers';
import { OAuthStateStore } from '../oauth-state.store';
import { ProviderOAuthStrategy } from './provider-oauth.strategy';

const CALLBACK = 'https://broker.example.test/connect/copyai/callback';

function settings(overrides: Partial<ProviderSettings>): ProviderSettings {
  return {
    id: 'copyai',
    clientId: 'copyai-client',
    clientSecret: 'copyai-secret',
    endpoints: { authorizeUrl: 'https://auth.example.test/oauth/authorize', tokenUrl: 'https://auth.example.test/oauth/token', apiUrl: 'https://api.example.test' },
    scope: 'content:read',
    usePkce: false,
    clientAuth: 'client_secret_post',
    authorizeParams: {},
    issuer: null,
    ...overrides,
  };
}

/** Runs the strategy's authorize step with a state store that hands out a fixed state; resolves with the redirect. */
function authorizeRedirect(providerSettings: ProviderSettings): Promise<URL> {
  // Passport picks the store's call shape by arity: keep all five parameters.
  const store = {
    store: (_req: unknown, _verifier: unknown, _state: unknown, _meta: unknown, callback: (error: Error | null, state?: string) => void) =>
      callback(null, 'the-state-from-the-store'),
    verify: () => undefined,
  } as unknown as OAuthStateStore;
  const strategy = new ProviderOAuthStrategy(providerSettings, CALLBACK, store, {} as ProviderClient);
  return new Promise((resolve, reject) => {
    Object.assign(strategy, {
      redirect: (location: string) => resolve(new URL(location)),
      error: reject,
      fail: () => reject(new Error('strategy failed')),
    });
    strategy.authenticate({ query: {}, body: {}, headers: {} } as never, {});
  });
}

const HOSTILE = {
  prompt: 'consent',
  access_type: 'offline',
  state: 'attacker-state',
  redirect_uri: 'https://attacker.test/cb',
  client_id: 'attacker-client',
  response_type: 'token',
  code_challenge: 'attacker-challenge',
  code_challenge_method: 'plain',
};

describe('ProviderOAuthStrategy authorize redirect', () => {
  it('adds the configured parameters', async () => {
    const url = await authorizeRedirect(settings({ authorizeParams: { prompt: 'consent', access_type: 'offline' } }));
    expect(Object.fromEntries(url.searchParams)).toEqual({
      prompt: 'consent',
      access_type: 'offline',
      response_type: 'code',
      redirect_uri: CALLBACK,
      scope: 'content:read',
      state: 'the-state-from-the-store',
      client_id: 'copyai-client',
    });
  });

  it('never lets them replace state, redirect_uri, client_id, response_type or PKCE parameters (PKCE on)', async () => {
    const url = await authorizeRedirect(settings({ usePkce: true, authorizeParams: HOSTILE }));
    const params = Object.fromEntries(url.searchParams);
    expect(params).toMatchObject({
      prompt: 'consent',
      access_type: 'offline',
      state: 'the-state-from-the-store',
      redirect_uri: CALLBACK,
      client_id: 'copyai-client',
      response_type: 'code',
      code_challenge_method: 'S256',
    });
    expect(params.code_challenge).toMatch(/^[A-Za-z0-9_-]{43}$/);
  });

  it('sends no PKCE parameter or scope it was given when PKCE is off and no scope is configured', async () => {
    const url = await authorizeRedirect(settings({ usePkce: false, scope: null, authorizeParams: { ...HOSTILE, scope: 'everything' } }));
    expect(url.searchParams.has('code_challenge')).toBe(false);
    expect(url.searchParams.has('code_challenge_method')).toBe(false);
    expect(url.searchParams.has('scope')).toBe(false);
    expect(url.searchParams.get('prompt')).toBe('consent');
  });
});
