/**
 * A provider for service-level specs: a ProviderClient whose token endpoint answers as each test
 * scripts it, in order: with tokens, with a ProviderError of a given kind, or not until the test
 * lets it (a held call, to make something happen while a refresh is at the provider). It records
 * every refresh it was asked for, so a spec can count the provider calls a user would pay for.
 * A call nobody scripted fails the refresh with a plain Error, and any other provider call
 * (exchange, revocation, identity) throws: the code under test asked for something unexpected.
 */
import { IssuedTokens, ProviderClient, ProviderError, ProviderErrorKind, ProviderSettings } from '@app/providers';

/** What the provider was asked: which provider, with which refresh token. */
export interface RefreshCall {
  readonly provider: string;
  readonly refreshToken: string;
}

/** A token answer with the usual fields; pass what the test cares about. */
export function issuedTokens(accessToken: string, fields: Partial<Omit<IssuedTokens, 'accessToken'>> = {}): IssuedTokens {
  return { accessToken, refreshToken: null, tokenType: 'Bearer', scope: null, expiresInSec: 3600, refreshTokenExpiresInSec: null, ...fields };
}

/** A refresh call the test holds at the provider until it answers it. */
export class HeldRefresh {
  /** Resolves with the call once the refresh has reached the provider. */
  readonly reached: Promise<RefreshCall>;
  private arrive!: (call: RefreshCall) => void;
  private settle?: (answer: () => IssuedTokens) => void;
  private pending?: () => IssuedTokens;

  constructor() {
    this.reached = new Promise((resolve) => (this.arrive = resolve));
  }

  /** Lets the held call answer with `tokens`. */
  answer(tokens: IssuedTokens): void {
    this.release(() => tokens);
  }

  /** Lets the held call fail as the provider would. */
  fail(kind: ProviderErrorKind, retryAfterSec?: number): void {
    this.release(() => {
      throw providerError(kind, retryAfterSec);
    });
  }

  /** @internal The stub hands the call over here and waits. */
  async take(call: RefreshCall): Promise<IssuedTokens> {
    this.arrive(call);
    const answer = await new Promise<() => IssuedTokens>((resolve) => {
      if (this.pending) resolve(this.pending);
      else this.settle = resolve;
    });
    return answer();
  }

  private release(answer: () => IssuedTokens): void {
    if (this.settle) this.settle(answer);
    else this.pending = answer;
  }
}

type Step = { answer: IssuedTokens } | { error: ProviderError } | { held: HeldRefresh };

export class StubProviderClient extends ProviderClient {
  /** Every refresh asked of the provider, in order. */
  readonly calls: RefreshCall[] = [];
  private readonly script: Step[] = [];

  /** The next refresh gets these tokens. */
  answers(tokens: IssuedTokens): this {
    this.script.push({ answer: tokens });
    return this;
  }

  /** The next refresh fails with a ProviderError of `kind` (transient ones may name a Retry-After). */
  fails(kind: ProviderErrorKind, retryAfterSec?: number): this {
    this.script.push({ error: providerError(kind, retryAfterSec) });
    return this;
  }

  /** The next refresh waits at the provider until the test answers it. */
  holds(): HeldRefresh {
    const held = new HeldRefresh();
    this.script.push({ held });
    return held;
  }

  override async refresh(settings: ProviderSettings, refreshToken: string): Promise<IssuedTokens> {
    const call = { provider: settings.id, refreshToken };
    this.calls.push(call);
    const step = this.script.shift();
    if (step === undefined) throw new Error(`unscripted refresh of a ${settings.id} token`);
    if ('error' in step) throw step.error;
    if ('held' in step) return step.held.take(call);
    return step.answer;
  }

  override exchangeCode(): Promise<IssuedTokens> {
    throw new Error('StubProviderClient: a code exchange was not expected');
  }

  override revoke(): Promise<'revoked' | 'unsupported'> {
    throw new Error('StubProviderClient: a revocation was not expected');
  }

  override fetchIdentity(): Promise<null> {
    throw new Error('StubProviderClient: an identity request was not expected');
  }
}

function providerError(kind: ProviderErrorKind, retryAfterSec?: number): ProviderError {
  const status = { invalid_grant: 400, invalid_client: 401, transient: 503, rejected: 400 }[kind];
  return new ProviderError(kind, `the stub provider answered the refresh with HTTP ${status} (${kind})`, { provider: 'stub', status, retryAfterSec });
}
