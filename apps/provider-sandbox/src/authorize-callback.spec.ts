/**
 * The sandbox's authorize side on command, over real HTTP: `iss` on callbacks (RFC 9207), an
 * arbitrary `error` instead of a code, and the PKCE counters the broker's suites read.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ProviderSandbox, SandboxProvider, startProviderSandbox } from './provider-sandbox';

const CALLBACK = 'http://localhost:3000/connect/%s/callback';
const SCOPE: Record<SandboxProvider, string | undefined> = { copper: 'developer/v1/all', copernica: undefined, copyai: undefined };

let sandbox: ProviderSandbox;

beforeAll(async () => {
  sandbox = await startProviderSandbox();
});
afterAll(async () => {
  await sandbox.close();
});
beforeEach(() => sandbox.reset());

/** The callback's parameters, from a redirect's query or Copper's auto-submitted form. */
async function authorize(p: SandboxProvider, decision: 'allow' | 'deny', extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const params = new URLSearchParams({
    response_type: 'code',
    client_id: `${p}-client`,
    redirect_uri: CALLBACK.replace('%s', p),
    state: randomBytes(32).toString('base64url'),
    sandbox_decision: decision,
    ...extra,
  });
  const scope = SCOPE[p];
  if (scope) params.set('scope', scope);
  const res = await fetch(`${sandbox.endpoints(p).authorizeUrl}?${params.toString()}`, { redirect: 'manual' });
  if (res.status === 302) return Object.fromEntries(new URL(res.headers.get('location')!).searchParams);
  expect(res.status).toBe(200);
  const html = await res.text();
  const unescape = (s: string): string => s.replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code)));
  const fields: Record<string, string> = {};
  for (const match of html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) fields[unescape(match[1])] = unescape(match[2]);
  return fields;
}

describe('iss on callbacks (RFC 9207)', () => {
  it('is absent by default', async () => {
    expect(await authorize('copyai', 'allow')).not.toHaveProperty('iss');
  });

  it.each(['copyai', 'copper', 'copernica'] as const)('%s: carries the configured issuer with a code and with an error', async (p) => {
    sandbox.configure(p, { issuer: `https://${p}.issuer.test` });
    const allowed = await authorize(p, 'allow');
    expect(allowed.code).toEqual(expect.any(String));
    expect(allowed.iss).toBe(`https://${p}.issuer.test`);
    const denied = await authorize(p, 'deny');
    expect(denied).toMatchObject({ error: 'access_denied', iss: `https://${p}.issuer.test` });
  });
});

describe('an error instead of a code, on command', () => {
  it.each([
    ['copyai', 'server_error'],
    ['copyai', 'Bad Code!<x>'],
    ['copper', 'invalid_scope'],
  ] as const)('%s answers %p after the user allows, with the state and no code', async (p, error) => {
    sandbox.configure(p, { authorizeError: error });
    const callback = await authorize(p, 'allow');
    expect(callback).toMatchObject({ error, state: expect.any(String) });
    expect(callback).not.toHaveProperty('code');
    sandbox.configure(p, { authorizeError: null });
    expect(await authorize(p, 'allow')).toHaveProperty('code');
  });

  it('is set and validated through the control API too', async () => {
    const configure = (body: unknown): Promise<Response> =>
      fetch(`${sandbox.url}/_sandbox/configure`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    expect((await configure({ provider: 'copyai', authorizeError: 'temporarily_unavailable', issuer: 'https://copyai.issuer.test' })).status).toBe(204);
    expect(await authorize('copyai', 'allow')).toMatchObject({ error: 'temporarily_unavailable', iss: 'https://copyai.issuer.test' });
    for (const bad of [{ authorizeError: '' }, { authorizeError: 42 }, { issuer: 'x'.repeat(2049) }]) {
      const res = await configure({ provider: 'copyai', ...bad });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({ error: 'invalid_request' });
    }
  });
});

describe('PKCE counters', () => {
  it('count codes issued for a challenge and redemptions whose verifier matched', async () => {
    const verifier = randomBytes(32).toString('base64url');
    const challenge = createHash('sha256').update(verifier).digest('base64url');
    const redeem = async (code: string, codeVerifier: string): Promise<number> => {
      const body = new URLSearchParams({
        grant_type: 'authorization_code',
        code,
        redirect_uri: CALLBACK.replace('%s', 'copyai'),
        client_id: 'copyai-client',
        client_secret: 'copyai-secret',
        code_verifier: codeVerifier,
      });
      return (await fetch(sandbox.endpoints('copyai').tokenUrl, { method: 'POST', body })).status;
    };
    await authorize('copyai', 'allow');
    const { code: wrong } = await authorize('copyai', 'allow', { code_challenge: challenge, code_challenge_method: 'S256' });
    const { code: right } = await authorize('copyai', 'allow', { code_challenge: challenge, code_challenge_method: 'S256' });
    expect(await redeem(wrong, randomBytes(32).toString('base64url'))).toBe(400);
    expect(await redeem(right, verifier)).toBe(200);
    expect(sandbox.stats().pkce.copyai).toEqual({ challenged: 2, verified: 1 });
    sandbox.resetStats();
    expect(sandbox.stats().pkce.copyai).toEqual({ challenged: 0, verified: 0 });
  });
});
