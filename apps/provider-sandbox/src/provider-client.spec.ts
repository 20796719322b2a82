/**
 * The broker's ProviderClient against the sandbox over real HTTP: refresh-token rotation, a wrong
 * client secret, a Basic-only provider and a provider that never answers. It lives with the
 * sandbox because libs/providers never imports an app; its own spec scripts answers by hand.
 */
import { PROVIDER_TIMEOUT_MS, ProviderClient, ProviderError, ProviderSettings } from '@app/providers';
import { ProviderSandbox, startProviderSandbox } from './provider-sandbox';

const WRONG_SECRET = 'client-secret-that-must-never-show';

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ProviderError);
  const providerError = error as ProviderError;
  for (const secret of [WRONG_SECRET, 'copyai-secret']) {
    expect(providerError.message).not.toContain(secret);
    expect(JSON.stringify(providerError.details)).not.toContain(secret);
  }
  return providerError;
}

describe('ProviderClient against the sandbox', () => {
  const client = new ProviderClient();
  let sandbox: ProviderSandbox;
  let settings: ProviderSettings;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    settings = {
      id: 'copyai',
      clientId: 'copyai-client',
      clientSecret: 'copyai-secret',
      endpoints: sandbox.endpoints('copyai'),
      scope: null,
      usePkce: false,
      clientAuth: 'client_secret_post',
      authorizeParams: {},
      issuer: null,
    };
  });
  afterAll(() => sandbox.close());

  it('refreshes, then finds the rotated refresh token dead (invalid_grant)', async () => {
    const issued = sandbox.issueTokens('copyai');
    const tokens = await client.refresh(settings, issued.refresh_token!);
    expect(tokens.refreshToken).not.toBe(issued.refresh_token);
    expect((await failure(client.refresh(settings, issued.refresh_token!))).kind).toBe('invalid_grant');
  });

  it('reports a wrong client secret as invalid_client', async () => {
    const issued = sandbox.issueTokens('copyai');
    expect((await failure(client.refresh({ ...settings, clientSecret: WRONG_SECRET }, issued.refresh_token!))).kind).toBe('invalid_client');
  });

  describe('playing a Basic-only provider', () => {
    beforeEach(() => sandbox.configure('copyai', { requireBasicAuth: true }));
    afterEach(() => sandbox.reset());

    /** A fresh authorization code from the sandbox, the consent answered by its shortcut. */
    async function authorizationCode(): Promise<string> {
      const url = new URL(settings.endpoints.authorizeUrl);
      const query = { client_id: settings.clientId, redirect_uri: 'http://127.0.0.1/cb', response_type: 'code', state: 's'.repeat(43), sandbox_decision: 'allow' };
      for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
      const answer = await fetch(url, { redirect: 'manual' });
      const code = new URL(answer.headers.get('location') ?? '').searchParams.get('code');
      expect(code).toMatch(/^cai_ac_/);
      return code as string;
    }

    it('exchanges a code, refreshes and revokes with client_secret_basic', async () => {
      const basic: ProviderSettings = { ...settings, clientAuth: 'client_secret_basic' };
      const issued = await client.exchangeCode(basic, { code: await authorizationCode(), redirectUri: 'http://127.0.0.1/cb' });
      expect(issued.accessToken).toMatch(/^cai_at_/);
      const refreshed = await client.refresh(basic, issued.refreshToken!);
      expect(refreshed.refreshToken).toMatch(/^cai_rt_/);
      await expect(client.revoke(basic, refreshed.refreshToken!, 'refresh_token')).resolves.toBe('revoked');
      expect(sandbox.stats().revocations.copyai).toBe(1);
      expect((await failure(client.refresh(basic, refreshed.refreshToken!))).kind).toBe('invalid_grant');
    });

    it('fails with invalid_client when the credentials go in the body (client_secret_post)', async () => {
      const post: ProviderSettings = { ...settings, clientAuth: 'client_secret_post' };
      const exchange = await failure(client.exchangeCode(post, { code: await authorizationCode(), redirectUri: 'http://127.0.0.1/cb' }));
      expect(exchange.kind).toBe('invalid_client');
      expect((await failure(client.refresh(post, sandbox.issueTokens('copyai').refresh_token!))).kind).toBe('invalid_client');
      expect((await failure(client.revoke(post, sandbox.issueTokens('copyai').access_token, 'access_token'))).kind).toBe('invalid_client');
      expect(exchange.message).not.toContain(settings.clientSecret);
    });
  });

  it('gives up on a provider that does not answer within PROVIDER_TIMEOUT_MS', async () => {
    sandbox.failNext('copyai', { kind: 'timeout' });
    const started = Date.now();
    const error = await failure(client.refresh(settings, sandbox.issueTokens('copyai').refresh_token!));
    expect(error.kind).toBe('transient');
    expect(error.message).toBe(`copyai did not answer the refresh within ${PROVIDER_TIMEOUT_MS / 1000}s`);
    expect(Date.now() - started).toBeGreaterThanOrEqual(PROVIDER_TIMEOUT_MS - 50);
  }, PROVIDER_TIMEOUT_MS + 10_000);
});
