/**
 * Provider sandbox: fake Copper, Copernica and Copy.ai OAuth 2.0 servers in one plain
 * `node:http` server, playing each provider's documented quirks faithfully (the design doc's
 * "Providers: what is known" table) for the e2e suites, the browser test, the
 * benchmarks and `npm run demo`. Tests steer it in process (configure, failNext, issueTokens,
 * stats) or over HTTP under /_sandbox/*.
 *
 * It must never be used in production or exposed beyond loopback: its client secrets are
 * public, its control API is unauthenticated, and everything lives in memory. It never logs,
 * so no token or secret can leak through it.
 *
 * Layout: providers/* hold each provider's quirks as data plus hooks; oauth-routes.ts is the
 * generic OAuth engine that serves them; sandbox-state.ts remembers codes, grants and tokens;
 * control-routes.ts is the HTTP control API.
 */
import { Server, ServerResponse, createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { registerControlRoutes } from './control-routes';
import { Router } from './http-kit';
import { registerProviderRoutes } from './oauth-routes';
import { perSandboxProvider, PROVIDER_SPECS } from './providers';
import {
  DEFAULT_USER,
  parseApiKey,
  parseBehaviourPatch,
  parseCount,
  parseEndpoint,
  parseExpiresInSec,
  parseFailure,
  parseProvider,
  parseUser,
  userFromId,
} from './sandbox-input';
import { SandboxState } from './sandbox-state';
import {
  FailingEndpoint,
  InjectedFailure,
  IssueTokensOptions,
  ProviderBehaviour,
  ProviderSandbox,
  RegisterApiKeyOptions,
  RegisteredApiKey,
  SANDBOX_PROVIDERS,
  SandboxClient,
  SandboxEndpoints,
  SandboxOptions,
  SandboxProvider,
  SandboxStats,
  TokenResponse,
} from './sandbox.types';

export * from './sandbox.types';
export { DEFAULT_USER } from './sandbox-input';
export { tokenFingerprint } from './sandbox-stats';

export async function startProviderSandbox(options: SandboxOptions = {}): Promise<ProviderSandbox> {
  const sandbox = new RunningProviderSandbox(options);
  await sandbox.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  return sandbox;
}

function resolveClients(given: SandboxOptions['clients']): Record<SandboxProvider, SandboxClient> {
  const client = (p: SandboxProvider): SandboxClient => ({
    clientId: given?.[p]?.clientId ?? `${p}-client`,
    clientSecret: given?.[p]?.clientSecret ?? `${p}-secret`,
  });
  return perSandboxProvider(client);
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

class RunningProviderSandbox implements ProviderSandbox {
  private readonly clients: Record<SandboxProvider, SandboxClient>;
  private readonly state: SandboxState;
  /** Responses held open by a 'timeout' failure. */
  private readonly hung = new Set<ServerResponse>();
  private readonly server: Server;
  private baseUrl = '';
  private closing: Promise<void> | undefined;

  constructor(options: SandboxOptions) {
    this.clients = resolveClients(options.clients);
    this.state = new SandboxState(PROVIDER_SPECS, this.clients, options.clock ?? Date.now);
    const router = new Router();
    for (const p of SANDBOX_PROVIDERS) {
      registerProviderRoutes(router, PROVIDER_SPECS[p], { state: this.state, hung: this.hung });
    }
    registerControlRoutes(router, this);
    this.server = createServer((req, res) => router.dispatch(req, res));
  }

  get url(): string {
    return this.baseUrl;
  }

  listen(port: number, host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const { port: bound } = this.server.address() as AddressInfo;
        this.baseUrl = `http://${urlHost(host)}:${bound}`;
        resolve();
      });
    });
  }

  endpoints(p: SandboxProvider): SandboxEndpoints {
    const { paths } = PROVIDER_SPECS[parseProvider(p)];
    const endpoints: SandboxEndpoints = {
      authorizeUrl: this.baseUrl + paths.authorize[0],
      tokenUrl: this.baseUrl + paths.token,
      apiUrl: this.baseUrl + paths.api,
    };
    if (paths.revoke) endpoints.revokeUrl = this.baseUrl + paths.revoke;
    if (paths.authenticate) endpoints.authenticateUrl = this.baseUrl + paths.authenticate;
    return endpoints;
  }

  env(): Record<string, string> {
    const env: Record<string, string> = {};
    for (const p of SANDBOX_PROVIDERS) {
      const spec = PROVIDER_SPECS[p];
      const endpoints = this.endpoints(p);
      env[`${spec.envPrefix}_CLIENT_ID`] = this.clients[p].clientId;
      env[`${spec.envPrefix}_CLIENT_SECRET`] = this.clients[p].clientSecret;
      env[`${spec.envPrefix}_AUTHORIZE_URL`] = endpoints.authorizeUrl;
      env[`${spec.envPrefix}_TOKEN_URL`] = endpoints.tokenUrl;
      env[`${spec.envPrefix}_API_URL`] = endpoints.apiUrl;
      if (endpoints.revokeUrl) env[`${spec.envPrefix}_REVOKE_URL`] = endpoints.revokeUrl;
      if (endpoints.authenticateUrl) env[`${spec.envPrefix}_AUTHENTICATE_URL`] = endpoints.authenticateUrl;
      Object.assign(env, spec.extraEnv);
    }
    return env;
  }

  configure(p: SandboxProvider, b: Partial<ProviderBehaviour>): void {
    this.state.configure(parseProvider(p), parseBehaviourPatch(b));
  }

  failNext(p: SandboxProvider, failure: InjectedFailure, count = 1, endpoint: FailingEndpoint = 'token'): void {
    this.state.failNext(parseProvider(p), parseFailure(failure), parseCount(count), parseEndpoint(endpoint));
  }

  failUntilCleared(p: SandboxProvider, failure: InjectedFailure, endpoint: FailingEndpoint = 'token'): void {
    this.state.failUntilCleared(parseProvider(p), parseFailure(failure), parseEndpoint(endpoint));
  }

  clearFailures(p?: SandboxProvider): void {
    this.state.clearFailures(p === undefined ? undefined : parseProvider(p));
  }

  issueTokens(p: SandboxProvider, opts: IssueTokensOptions = {}): TokenResponse {
    const spec = PROVIDER_SPECS[parseProvider(p)];
    const user = parseUser(opts.user) ?? userFromId(DEFAULT_USER.id);
    return spec.tokenResponse(this.state.mint(spec, user, parseExpiresInSec(opts.expiresInSec)));
  }

  registerApiKey(p: SandboxProvider, opts: RegisterApiKeyOptions = {}): RegisteredApiKey {
    const spec = PROVIDER_SPECS[parseProvider(p)];
    const user = parseUser(opts.user) ?? userFromId(DEFAULT_USER.id);
    return this.state.registerApiKey(spec, user, parseApiKey(opts.apiKey));
  }

  stats(): SandboxStats {
    return this.state.stats.snapshot();
  }

  resetStats(): void {
    this.state.stats.reset();
  }

  reset(): void {
    this.state.reset();
  }

  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve, reject) => {
      for (const res of this.hung) res.destroy();
      this.hung.clear();
      this.server.close((err) => (err ? reject(err) : resolve()));
      // Keep-alive sockets (and requests still sleeping through latency) would hold close() open.
      this.server.closeAllConnections();
    });
    return this.closing;
  }
}
