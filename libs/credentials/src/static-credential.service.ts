import { Clock, DomainError, ErrorCode } from '@app/common';
import { AppConfig } from '@app/config';
import { AuthMode, ConnectionRecord, ConnectionRepository, ConnectionStatus } from '@app/connections';
import { ProviderClient, providerDefinition, ProviderError, ProviderId, ProviderIdentity } from '@app/providers';
import { AtProvider, ConnectionRevoker } from '@app/revocation';
import { ConnectionCache } from '@app/tokens';
import { Injectable, Logger } from '@nestjs/common';
import { CredentialInput, parseCredentialInput } from './credential-input';

/** How a stored key was checked: by the provider, not at all on request, or not at all because the provider has no way. */
export type Verification = 'verified' | 'skipped' | 'not_supported';
export const VERIFICATIONS: readonly Verification[] = ['verified', 'skipped', 'not_supported'];

export interface StoredCredential {
  connection: ConnectionRecord;
  verification: Verification;
  /** The OAuth grant this replaced and what its provider was told about it; null when no grant was replaced. */
  replacedGrant: AtProvider | null;
}

/** Rounds of "read the row, revoke its grant, store the key if the row is still what was read". */
const MAX_ATTEMPTS = 3;

/**
 * Stores static credentials (API keys), whoever enters them: an admin (PUT
 * /admin/connections/:account/credentials) or the end user (the connect form). The one path, so
 * both check a key the same way before anything is stored (DESIGN, "Static credentials"):
 *
 * - The key is checked live as it will be applied (the provider's definition says how); a
 *   refusal is `credential_rejected` and a check that could not run is `provider_unavailable`,
 *   and in both cases nothing is stored.
 * - An OAuth grant the key replaces is revoked at the provider first, where it can be, and the
 *   key is stored only if the row is still the one whose grant was revoked (fenced by version),
 *   so no grant stored meanwhile is dropped unrevoked.
 *
 * It never returns, logs or puts the key in an error.
 */
@Injectable()
export class StaticCredentialService {
  private readonly logger = new Logger('Credentials');

  constructor(
    private readonly config: AppConfig,
    private readonly connections: ConnectionRepository,
    private readonly revoker: ConnectionRevoker,
    private readonly client: ProviderClient,
    private readonly cache: ConnectionCache,
    private readonly clock: Clock,
  ) {}

  /** Checks what a caller sent (see parseCredentialInput): `fields` are the ones its way in accepts. */
  parse(provider: ProviderId, body: unknown, fields?: ReadonlyArray<string>): CredentialInput {
    return parseCredentialInput(providerDefinition(provider), body, this.clock.now(), fields);
  }

  /**
   * `beforeStore` runs once the key passed its check and before anything is revoked or written;
   * if it throws, nothing is (the connect form uses its link up there, so the link stays one-time).
   */
  async store(account: string, provider: ProviderId, input: CredentialInput, options: { beforeStore?: () => Promise<void> } = {}): Promise<StoredCredential> {
    const { verification, identity } = await this.check(provider, input);
    await options.beforeStore?.();
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const existing = await this.connections.findOne(account, provider);
      let replacedGrant: AtProvider | null = null;
      let replacing = existing?.version ?? null;
      if (existing && existing.authMode === AuthMode.OAuth2 && existing.status !== ConnectionStatus.Revoked) {
        const sealed = await this.connections.findSealedById(existing.id);
        if (!sealed) continue;
        replacedGrant = await this.revoker.revokeAtProvider(sealed);
        replacing = sealed.record.version;
      }
      const saved = await this.connections.saveStaticCredential({
        account,
        provider,
        credential: input.credential,
        expiresAt: input.expiresAt,
        identity,
        replacing,
      });
      if (saved) {
        // Other replicas hear of it by NOTIFY; this one must not serve its cached copy meanwhile.
        this.cache.invalidate(account);
        this.logger.log(`stored an API key for ${provider} account ${account} (${verification}${replacedGrant ? ', replacing an OAuth grant' : ''})`);
        return { connection: saved, verification, replacedGrant };
      }
    }
    throw new DomainError(ErrorCode.RefreshInProgress, `the ${provider} connection of ${account} kept changing while the key was stored; try again`, { retryAfter: 1 });
  }

  /** Asks the provider about the key, unless told not to or the provider has no way. */
  private async check(provider: ProviderId, input: CredentialInput): Promise<{ verification: Verification; identity: ProviderIdentity | null }> {
    const definition = providerDefinition(provider);
    if (definition.staticCredential.verification === 'not_supported') return { verification: 'not_supported', identity: null };
    if (!input.verify) return { verification: 'skipped', identity: null };
    const apiUrl = this.config.providerApis[provider].apiUrl;
    if (apiUrl === null) {
      throw new DomainError(ErrorCode.ProviderNotConfigured, `${definition.displayName} has no API URL on this broker (set ${definition.envPrefix}_API_URL) to check the key with`);
    }
    try {
      return { verification: 'verified', identity: await this.client.verifyStaticCredential(provider, apiUrl, input.credential) };
    } catch (error) {
      if (!(error instanceof ProviderError)) throw error;
      if (error.kind === 'transient') {
        throw new DomainError(
          ErrorCode.ProviderUnavailable,
          `${definition.displayName} could not be asked about the key (${error.message}); nothing was stored, try again`,
          error.details.retryAfterSec !== undefined ? { retryAfter: error.details.retryAfterSec } : undefined,
        );
      }
      throw new DomainError(ErrorCode.CredentialRejected, `${definition.displayName} refused the key${error.details.status ? ` (HTTP ${error.details.status})` : ''}; nothing was stored`);
    }
  }
}
