/**
 * The API key connect link over plain HTTP (the browser suite shows it in Chromium): what the
 * form page sends, a missing field and a provider that cannot be asked re-show the form, refused
 * keys are limited per link, an OAuth link and a key link cannot stand in for each other, and a
 * key link needs no OAuth client on the broker.
 */
import { DataSource } from 'typeorm';
import { ProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { useBrokerSuite } from '../support/broker-suite';
import { ConnectLinkPage, createConnectSession, openConnectLink, submitConfirmation } from '../support/connect-dance';
import { captureLogs, startTestBroker, TestBroker } from '../support/test-broker';

const RETURN_TO = 'http://localhost:5173/integrations';

describe('API key connect links', () => {
  const logs = captureLogs('debug');
  const suite = useBrokerSuite({ logger: logs.logger });
  let sandbox: ProviderSandbox;
  let broker: TestBroker;
  let db: DataSource;
  beforeAll(() => ({ sandbox, broker, db } = suite));
  beforeEach(() => logs.claimProcessLogger());

  const keyLink = async (account: string, provider: string, on: TestBroker = broker): Promise<string> => {
    const response = await createConnectSession(on, { account, provider, returnTo: RETURN_TO, authMode: 'api_key' });
    expect(response.status).toBe(201);
    return ((await response.json()) as { connectUrl: string }).connectUrl;
  };
  /** Submits the key form as the browser that opened it (its cookie and form token). */
  const submit = async (page: ConnectLinkPage, fields: Record<string, string>): Promise<{ status: number; html: string; location: string | null }> => {
    const form = new URLSearchParams(page.fields);
    for (const [k, v] of Object.entries(fields)) form.set(k, v);
    const response = await submitConfirmation(page, { fields: form });
    return { status: response.status, html: await response.text(), location: response.headers.get('location') };
  };
  const rows = async (): Promise<number> => Number((await db.query(`SELECT count(*) FROM connections`))[0].count);

  it('serves a form with a strict CSP that lets it post only to the broker (and end at returnTo), asking exactly for the provider\'s fields', async () => {
    const page = await openConnectLink(broker, await keyLink('acme', 'copper'));
    expect(page.action.pathname).toBe('/connect/copper/key');
    expect(page.response.headers.get('content-security-policy')).toBe(
      "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http://localhost:5173; frame-ancestors 'none'",
    );
    expect(page.html).toMatch(/<input id="apiKey" name="apiKey" type="password"/);
    expect(page.html).toMatch(/<input id="userEmail" name="userEmail" type="email"/);
    expect(page.html).not.toContain('<script');
    const copyai = await openConnectLink(broker, await keyLink('acme', 'copyai'));
    expect(copyai.html).not.toContain('name="userEmail"');
    // Nothing is used up by opening the link.
    expect((await db.query(`SELECT used_at FROM connect_sessions`)).every((r: { used_at: Date | null }) => r.used_at === null)).toBe(true);
  });

  it('a missing field, or a provider that cannot be asked, shows the form again and stores nothing; the link still works afterwards', async () => {
    const { apiKey, userEmail } = sandbox.registerApiKey('copper');
    const page = await openConnectLink(broker, await keyLink('acme', 'copper'));
    const missing = await submit(page, { apiKey });
    expect(missing.status).toBe(400);
    expect(missing.html).toContain('The email is required');
    expect(missing.html).not.toContain(apiKey);

    await sandbox.close();
    try {
      const down = await submit(page, { apiKey, userEmail });
      expect(down.status).toBe(503);
      expect(down.html).toContain('could not be asked about the key just now');
    } finally {
      const { startProviderSandbox } = await import('../../apps/provider-sandbox/src/provider-sandbox');
      suite.sandbox = sandbox = await startProviderSandbox({ port: Number(new URL(sandbox.url).port) });
    }
    expect(await rows()).toBe(0);
    sandbox.registerApiKey('copper', { apiKey });
    const stored = await submit(page, { apiKey, userEmail });
    expect(stored.status).toBe(302);
    expect(stored.location).toBe(`${RETURN_TO}?status=connected&account=acme&provider=copper`);
  });

  it('limits refused keys per link: the fifth refusal uses the link up and sends the user back with the error', async () => {
    const { apiKey } = sandbox.registerApiKey('copernica');
    const page = await openConnectLink(broker, await keyLink('acme', 'copernica'));
    for (let attempt = 1; attempt <= 4; attempt++) {
      const refused = await submit(page, { apiKey: `wrong-${attempt}` });
      expect(refused.status).toBe(422);
      expect(refused.html).toContain(`${5 - attempt} attempt(s) left`);
    }
    const last = await submit(page, { apiKey: 'wrong-5' });
    expect(last.status).toBe(302);
    expect(last.location).toBe(`${RETURN_TO}?status=error&error=credential_rejected&account=acme&provider=copernica`);
    const after = await submit(page, { apiKey });
    expect(after.status).toBe(400);
    expect(after.html).toContain('already used');
    expect(await rows()).toBe(0);
    expect(sandbox.stats().apiKeyChecks.copernica).toEqual({ accepted: 0, refused: 5 });
  });

  it('an OAuth link does not open the key form, and a key link does not start the OAuth dance', async () => {
    const keyPage = await openConnectLink(broker, await keyLink('acme', 'copyai'));
    const asOauth = await submitConfirmation({ ...keyPage, action: new URL('/connect/copyai', keyPage.action) });
    expect(asOauth.status).toBe(400);
    const oauthResponse = await createConnectSession(broker, { account: 'acme', provider: 'copyai', returnTo: RETURN_TO });
    const oauthPage = await openConnectLink(broker, ((await oauthResponse.json()) as { connectUrl: string }).connectUrl);
    expect(oauthPage.action.pathname).toBe('/connect/copyai');
    const keyInOauth = await submit({ ...oauthPage, action: new URL('/connect/copyai/key', oauthPage.action) }, { apiKey: 'cai_key_x' });
    expect(keyInOauth.status).toBe(400);
    expect(await rows()).toBe(0);
    expect((await createConnectSession(broker, { account: 'acme', provider: 'copyai', authMode: 'password' })).status).toBe(400);
  });

  it('a key link needs no OAuth client on the broker (Copy.ai publishes no OAuth)', async () => {
    const withoutClient = await startTestBroker({ ...sandbox.env(), COPYAI_CLIENT_ID: '', COPYAI_CLIENT_SECRET: '', REFRESH_SCHEDULER_ENABLED: 'false' });
    try {
      const oauth = await createConnectSession(withoutClient, { account: 'acme', provider: 'copyai' });
      expect(oauth.status).toBe(400);
      expect(((await oauth.json()) as { error: string }).error).toBe('provider_not_configured');
      const page = await openConnectLink(withoutClient, await keyLink('acme', 'copyai', withoutClient));
      const stored = await submit(page, { apiKey: 'cai_key_from-the-form' });
      expect(stored.status).toBe(302);
      expect(stored.location).toContain('status=connected');
      const token = await withoutClient.call('/tokens/acme?provider=copyai', { as: 'service' });
      expect(await token.json()).toMatchObject({ authMode: 'api_key', apply: { headers: { 'x-copy-ai-api-key': 'cai_key_from-the-form' } } });
    } finally {
      await withoutClient.close();
    }
  });

  it('audits each submission as credential.store by the end user, and never logs the key', async () => {
    const { apiKey } = sandbox.registerApiKey('copernica');
    const page = await openConnectLink(broker, await keyLink('acme', 'copernica'));
    await submit(page, { apiKey: 'cpn_key_wrong-one' });
    await submit(page, { apiKey });
    const audit = logs.entries().filter((e) => e.context === 'Audit' && e.action === 'credential.store');
    expect(audit.slice(-2).map((e) => ({ actorKind: e.actorKind, outcome: e.outcome, account: e.account }))).toEqual([
      { actorKind: 'end_user', outcome: 'rejected', account: 'acme' },
      { actorKind: 'end_user', outcome: 'stored', account: 'acme' },
    ]);
    const logText = logs.lines.join('\n');
    expect(logText).not.toContain(apiKey);
    expect(logText).not.toContain('cpn_key_wrong-one');
  });
});
