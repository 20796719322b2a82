/**
 * The sandbox stands in for every provider the broker knows, in the e2e suites, the benchmarks and
 * the demo. A provider added to the broker's registry without a sandbox file here would go
 * untested end to end, and a sandbox that plays a quirk differently from the broker's definition
 * would prove nothing; these specs fail in both cases.
 */
import { PROVIDER_DEFINITIONS, ProviderDefinition } from '@app/providers';
import { DEFAULT_USER } from '../sandbox-input';
import { AuthorizeRequest, ProviderSpec } from './provider-spec';
import { SANDBOX_PROVIDER_SPECS } from './index';

function sandboxSpec(id: string): ProviderSpec<string> | undefined {
  return SANDBOX_PROVIDER_SPECS.find((spec) => spec.id === id);
}

/** An authorization request the sandbox's generic checks have let through. */
function authorizeRequest(overrides: Partial<AuthorizeRequest>): AuthorizeRequest {
  return {
    clientId: 'client',
    redirectUri: 'http://127.0.0.1/callback',
    responseType: 'code',
    scope: undefined,
    state: 's'.repeat(64),
    codeChallenge: undefined,
    codeChallengeMethod: undefined,
    user: { ...DEFAULT_USER },
    ...overrides,
  };
}

/** The broker's definition and the sandbox's spec, each described in the other's words. */
function quirks(definition: ProviderDefinition, spec: ProviderSpec<string>): { broker: Record<string, unknown>; sandbox: Record<string, unknown> } {
  return {
    broker: {
      envPrefix: definition.envPrefix,
      callback: definition.callback === 'form_post' ? 'form-post' : 'redirect',
      tokenExchange: definition.tokenExchange === 'query_get' ? 'get-query' : 'form-post',
      tokenPresentation: definition.tokenPresentation === 'access_token_query' ? 'access-token-query' : 'bearer-header',
      revocationEndpoint: definition.revocation === 'rfc7009',
      identityPath: definition.identity ? spec.paths.api + definition.identity.path : spec.paths.identity,
      mintsDerivedTokens: definition.derivedToken !== undefined,
    },
    sandbox: {
      envPrefix: spec.envPrefix,
      callback: spec.callback,
      tokenExchange: spec.tokenRequest,
      tokenPresentation: spec.tokenPresentation,
      revocationEndpoint: spec.paths.revoke !== undefined,
      identityPath: spec.paths.identity,
      mintsDerivedTokens: spec.paths.authenticate !== undefined,
    },
  };
}

describe('the sandbox and the broker registry', () => {
  it('plays every provider the broker registry has', () => {
    const missing = PROVIDER_DEFINITIONS.map((d) => d.id).filter((id) => !sandboxSpec(id));
    expect(missing).toEqual([]);
  });

  describe.each(PROVIDER_DEFINITIONS.map((definition) => [definition.id, definition] as const))('%s', (id, definition) => {
    const spec = (): ProviderSpec<string> => {
      const found = sandboxSpec(id);
      if (!found) throw new Error(`the sandbox has no ${definition.displayName}: add apps/provider-sandbox/src/providers/${id}.provider.ts`);
      return found;
    };

    it('plays the quirks its definition states: variables, callback, exchange, presentation, revocation, identity', () => {
      const { broker, sandbox } = quirks(definition, spec());
      expect(sandbox).toEqual(broker);
    });

    it('takes an API key presented as the definition presents it, with the email exactly where the definition asks for one', () => {
      const credential = { apiKey: 'key-1', userEmail: definition.staticCredential.userEmail === 'required' ? 'owner@example.test' : null };
      const apply = definition.staticCredential.present(credential);
      const headers = Object.fromEntries(Object.entries(apply.headers).map(([k, v]) => [k.toLowerCase(), v]));
      const presented = spec().presentedApiKey(headers, new URLSearchParams(apply.query));
      expect(presented).toEqual({ key: 'key-1', complete: true, ...(credential.userEmail ? { userEmail: credential.userEmail } : {}) });
      expect(spec().apiKeyNeedsEmail).toBe(definition.staticCredential.userEmail === 'required');
    });

    it('accepts the scope the broker sends by default', () => {
      const scope = definition.defaultScope ?? undefined;
      expect(spec().checkAuthorize(authorizeRequest({ scope }))).toBeUndefined();
    });

    it('sends a code back for a state as short as the definition allows, and not for a shorter one', () => {
      const min = definition.minStateLength ?? 1;
      expect(spec().issuesCode(authorizeRequest({ state: 's'.repeat(min) }))).toBe(true);
      if (definition.minStateLength !== undefined) expect(spec().issuesCode(authorizeRequest({ state: 's'.repeat(min - 1) }))).toBe(false);
    });
  });
});
