/**
 * A provider's callback may arrive as a cross-site form POST, which carries no SameSite=Lax
 * binding cookie: Copper always answers so (its definition says `form_post`), and any provider
 * does when the broker asks for `response_mode=form_post` in `<PREFIX>_AUTHORIZE_PARAMS`. Such a
 * POST is bounced to the same-site GET callback (where the cookie is sent); a cookie-less POST
 * from a provider that does not answer that way goes straight to the binding check.
 */
import { ProviderSandbox, startProviderSandbox } from '../../apps/provider-sandbox/src/provider-sandbox';
import { startTestBroker, TestBroker } from '../support/test-broker';

describe('form POST callbacks without the binding cookie', () => {
  let sandbox: ProviderSandbox;
  let broker: TestBroker;

  beforeAll(async () => {
    sandbox = await startProviderSandbox();
    broker = await startTestBroker({ ...sandbox.env(), REFRESH_SCHEDULER_ENABLED: 'false', COPYAI_AUTHORIZE_PARAMS: 'response_mode=form_post' });
  });

  afterAll(async () => {
    await broker?.close();
    await sandbox?.close();
  });

  const postCallback = (provider: string): Promise<Response> =>
    broker.call(`/connect/${provider}/callback`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ code: 'some-code', state: 's'.repeat(43) }).toString(),
    });

  it.each([
    ['copper', 'its definition says form_post'],
    ['copyai', 'the broker asked for response_mode=form_post'],
  ])('bounces %s (%s) to the same-site GET callback', async (provider) => {
    const response = await postCallback(provider);
    expect(response.status).toBe(200);
    const page = await response.text();
    expect(page).toContain(`/connect/${provider}/callback?code=some-code`);
  });

  it('refuses a cookie-less POST from a provider that answers with a redirect (copernica)', async () => {
    const response = await postCallback('copernica');
    expect(response.status).toBe(400);
    expect(await response.text()).toContain('state_invalid');
  });
});
