/**
 * What the authorization request carries and what the callback must prove, against the real
 * broker, Postgres and the sandbox: PKCE (S256) end to end and against code injection, the
 * authorization server's issuer (RFC 9207, `<PROVIDER>_ISSUER`) and extra authorize parameters
 * (`<PROVIDER>_AUTHORIZE_PARAMS`).
 */
import { DataSource } from 'typeorm';
import { ProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { answerAtProvider, connectUrlFor, dance, deliverCallback, startFlow } from '../support/connect-dance';
import { useBrokerSuite } from '../support/broker-suite';
import { TestBroker } from '../support/test-broker';

const RETURN_TO = 'http://localhost:5173/done';

function landing(response: Response): Record<string, string> {
  expect(response.status).toBe(302);
  const location = new URL(response.headers.get('location')!);
  expect(location.origin + location.pathname).toBe(RETURN_TO);
  return Object.fromEntries(location.searchParams);
}

describe('PKCE (S256) with Copy.ai', () => {
  const suite = useBrokerSuite({ env: { COPYAI_USE_PKCE: 'true' } });
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ sandbox, broker, db } = suite));
  const count = async (table = 'connections'): Promise<number> => Number((await db.query(`SELECT count(*) FROM ${table}`))[0].count);

  it('the full connect sends an S256 challenge and the provider verifies the code_verifier', async () => {
    sandbox.configure('copyai', { requirePkce: true });
    const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO));

    expect(result.authorizeUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(result.authorizeUrl.searchParams.get('code_challenge')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(landing(result.final)).toEqual({ status: 'connected', account: 'acme', provider: 'copyai' });
    expect(sandbox.stats().pkce.copyai).toEqual({ challenged: 1, verified: 1 });
    expect((await db.query(`SELECT status FROM connections WHERE account = 'acme'`))[0].status).toBe('active');
    // The sealed verifier went with its state.
    expect(await count('oauth_states')).toBe(0);
  });

  it('a code from one flow delivered with another flow’s state and cookie connects nothing', async () => {
    const victim = await startFlow(broker, await connectUrlFor(broker, 'victim', 'copyai', RETURN_TO));
    const attacker = await startFlow(broker, await connectUrlFor(broker, 'attacker', 'copyai', RETURN_TO));
    const victimAnswer = await answerAtProvider(victim.authorizeUrl);
    const attackerAnswer = await answerAtProvider(attacker.authorizeUrl);
    expect(sandbox.stats().pkce.copyai.challenged).toBe(2);

    // The attacker's browser finishes its own flow with the victim's code.
    const injected = new URL(attackerAnswer.callbackUrl);
    injected.searchParams.set('code', victimAnswer.callbackUrl.searchParams.get('code')!);
    const response = await deliverCallback(broker, { ...attackerAnswer, callbackUrl: injected }, attacker.cookie);

    expect(landing(response)).toEqual({ status: 'error', error: 'exchange_failed', account: 'attacker', provider: 'copyai' });
    expect(sandbox.stats().tokenRequests.copyai.authorizationCode).toBe(1);
    expect(sandbox.stats().invalidGrants).toBe(1);
    expect(sandbox.stats().pkce.copyai.verified).toBe(0);
    expect(await count()).toBe(0);
  });
});

describe('the authorization server’s issuer (RFC 9207)', () => {
  const ISSUER = 'https://copyai.issuer.test';
  const suite = useBrokerSuite({ env: { COPYAI_ISSUER: ISSUER, COPPER_ISSUER: 'https://copper.issuer.test' } });
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ sandbox, broker, db } = suite));
  const count = async (): Promise<number> => Number((await db.query(`SELECT count(*) FROM connections`))[0].count);

  it('a callback carrying the configured iss connects', async () => {
    sandbox.configure('copyai', { issuer: ISSUER });
    const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO));
    expect(result.callbackUrl!.searchParams.get('iss')).toBe(ISSUER);
    expect(landing(result.final)).toEqual({ status: 'connected', account: 'acme', provider: 'copyai' });
  });

  it.each([
    ['another issuer', 'https://mix-up.attacker.test'],
    ['the issuer with a trailing slash', `${ISSUER}/`],
    ['no iss at all', null],
  ])('%s: issuer_mismatch, the code is never exchanged and nothing is stored', async (_case, issuer) => {
    sandbox.configure('copyai', { issuer });
    const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO));
    expect(landing(result.final)).toEqual({ status: 'error', error: 'issuer_mismatch', account: 'acme', provider: 'copyai' });
    expect(sandbox.stats().tokenRequests.copyai.authorizationCode).toBe(0);
    expect(await count()).toBe(0);
    expect(Number((await db.query(`SELECT count(*) FROM oauth_states`))[0].count)).toBe(0);
  });

  it('an error callback from the wrong issuer is issuer_mismatch too, not the error it claims', async () => {
    sandbox.configure('copyai', { issuer: 'https://mix-up.attacker.test', authorizeError: 'server_error' });
    const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO));
    expect(landing(result.final)).toEqual({ status: 'error', error: 'issuer_mismatch', account: 'acme', provider: 'copyai' });
  });

  it('Copper’s form POST keeps iss through the bounce to the GET callback', async () => {
    sandbox.configure('copper', { issuer: 'https://copper.issuer.test' });
    const { authorizeUrl, cookie } = await startFlow(broker, await connectUrlFor(broker, 'acme', 'copper', RETURN_TO));
    const answer = await answerAtProvider(authorizeUrl);
    expect(answer.form?.get('iss')).toBe('https://copper.issuer.test');
    const bounce = await deliverCallback(broker, answer, '');
    expect(bounce.status).toBe(200);
    const target = /url=([^"]+)"/.exec(await bounce.text())![1].replace(/&#38;|&amp;/g, '&');
    expect(new URL(target, broker.url).searchParams.get('iss')).toBe('https://copper.issuer.test');
    const final = await fetch(new URL(target, broker.url), { redirect: 'manual', headers: { cookie } });
    expect(landing(final)).toEqual({ status: 'connected', account: 'acme', provider: 'copper' });
  });

  it('without a configured issuer, an iss that arrives is ignored', async () => {
    sandbox.configure('copernica', { issuer: 'https://whoever.test' });
    const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copernica', RETURN_TO));
    expect(landing(result.final)).toEqual({ status: 'connected', account: 'acme', provider: 'copernica' });
  });
});

describe('extra authorize parameters', () => {
  const suite = useBrokerSuite({ env: { COPYAI_AUTHORIZE_PARAMS: 'prompt=consent&access_type=offline', COPYAI_USE_PKCE: 'true' } });
  let broker: TestBroker;
  beforeAll(() => ({ broker } = suite));

  it('are added to the authorize redirect beside the broker’s own, and the connect completes', async () => {
    const result = await dance(broker, await connectUrlFor(broker, 'acme', 'copyai', RETURN_TO));
    const params = result.authorizeUrl.searchParams;
    expect(params.get('prompt')).toBe('consent');
    expect(params.get('access_type')).toBe('offline');
    expect(params.get('response_type')).toBe('code');
    expect(params.get('client_id')).toBe('copyai-client');
    expect(params.get('redirect_uri')).toBe(`${broker.url}/connect/copyai/callback`);
    expect(params.get('state')).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(params.get('code_challenge_method')).toBe('S256');
    expect(landing(result.final)).toEqual({ status: 'connected', account: 'acme', provider: 'copyai' });
  });
});
