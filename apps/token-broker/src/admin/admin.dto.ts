import { AuthMode, ConnectionStatus, ConnectionView, LIFECYCLE_EVENT_TYPES, LifecycleEventType } from '@app/connections';
import { DELIVERY_STATUSES, DeliveryStatus, DeliveryView } from '@app/webhooks';
import { VERIFICATIONS, Verification } from '@app/credentials';
import { AUDIT_ACTIONS, AuditAction, AuditActorKind, AuditRecord } from '@app/observability';
import { PROVIDER_IDS } from '@app/providers';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { TOKEN_REVOCATIONS, TokenRevocation } from '@app/revocation';

export class ConnectionErrorDto {
  @ApiProperty({ example: 'invalid_grant' }) code!: string;
  @ApiProperty() message!: string;
  @ApiProperty() at!: string;
}

export class ConnectionIdentityDto {
  @ApiPropertyOptional() id?: string;
  @ApiPropertyOptional() name?: string;
  @ApiPropertyOptional() email?: string;
  @ApiPropertyOptional() company?: string;
}

/** OpenAPI's description of ConnectionView (built by toConnectionView in @app/connections). */
export class ConnectionViewDto implements ConnectionView {
  @ApiProperty({ example: 'acme-42' }) account!: string;
  @ApiProperty({ enum: [...PROVIDER_IDS] }) provider!: string;
  @ApiProperty({ enum: ConnectionStatus }) status!: ConnectionStatus;
  @ApiProperty({ enum: AuthMode, description: 'oauth2: an OAuth grant; api_key: a static credential' }) authMode!: AuthMode;
  @ApiProperty({ nullable: true, type: String, description: 'null: the token (or API key) does not expire, or none is stored' }) expiresAt!: string | null;
  @ApiProperty({ nullable: true, type: String }) refreshTokenExpiresAt!: string | null;
  @ApiProperty({ description: 'whether a refresh token is stored (never the token)' }) hasRefreshToken!: boolean;
  @ApiProperty({ nullable: true, type: String }) scope!: string | null;
  @ApiProperty() connectedAt!: string;
  @ApiProperty({ description: 'last change of tokens, status or error' }) updatedAt!: string;
  @ApiProperty({ nullable: true, type: String }) lastRefreshedAt!: string | null;
  @ApiProperty({ nullable: true, type: String, description: 'last GET /tokens (recorded to within 30 s)' }) lastUsedAt!: string | null;
  @ApiProperty({ nullable: true, type: String, description: 'when the sweep will refresh it next (or retry after a failure)' }) nextRefreshAt!: string | null;
  @ApiProperty({ description: 'failed refresh attempts since the last success' }) refreshFailures!: number;
  @ApiProperty({ nullable: true, type: ConnectionErrorDto }) lastError!: ConnectionErrorDto | null;
  @ApiProperty({ nullable: true, type: ConnectionIdentityDto, description: 'who connected, as the provider told us' }) identity!: ConnectionIdentityDto | null;
}

export class ConnectionPageDto {
  @ApiProperty({ type: [ConnectionViewDto], description: 'ordered by account, then provider' }) items!: ConnectionViewDto[];
  @ApiProperty({ nullable: true, type: String, description: 'pass as ?cursor= for the next page; null on the last page' }) nextCursor!: string | null;
}

/** What became of one stored token at the provider. */

export class ProviderRevocationDto {
  @ApiProperty({ enum: [...TOKEN_REVOCATIONS], description: 'the access token at the provider' }) accessToken!: TokenRevocation;
  @ApiProperty({ enum: [...TOKEN_REVOCATIONS], description: 'the refresh token at the provider' }) refreshToken!: TokenRevocation;
  @ApiProperty({ nullable: true, type: String, description: 'why the provider did not confirm, when a revocation failed' }) error!: string | null;
}

export class RevokeResponseDto {
  @ApiProperty() account!: string;
  @ApiProperty() provider!: string;
  @ApiProperty({ description: 'the connection was revoked before this call; nothing was done' }) alreadyRevoked!: boolean;
  @ApiProperty({ type: ProviderRevocationDto }) atProvider!: ProviderRevocationDto;
  @ApiProperty({ description: 'this call erased the stored tokens' }) erasedLocally!: boolean;
  @ApiProperty({ description: 'one or two sentences saying what happened where' }) message!: string;
  @ApiProperty({ type: ConnectionViewDto }) connection!: ConnectionViewDto;
}

export class RefreshResponseDto {
  @ApiProperty() account!: string;
  @ApiProperty() provider!: string;
  @ApiProperty({ enum: ['refreshed', 'superseded'], description: 'superseded: another writer stored newer tokens meanwhile' }) outcome!: 'refreshed' | 'superseded';
  @ApiProperty({ nullable: true, type: String }) expiresAt!: string | null;
  @ApiProperty() message!: string;
  @ApiProperty({ type: ConnectionViewDto }) connection!: ConnectionViewDto;
}

/** PUT /admin/connections/:account/credentials: the static credential to store. */
export class StoreCredentialBodyDto {
  @ApiProperty({ description: 'the API key (Copernica: an API access token from its dashboard); never shown again' }) apiKey!: string;
  @ApiPropertyOptional({ description: 'Copper only, and required there: the email of the user who generated the key' }) userEmail?: string;
  @ApiPropertyOptional({ type: String, format: 'date-time', nullable: true, description: 'when the key stops working (Copy.ai: 12 months after it was made); reads then answer 409 needs_reauth' })
  expiresAt?: string | null;
  @ApiPropertyOptional({ default: true, description: 'false: store without asking the provider (the answer says verification: skipped)' }) verify?: boolean;
}

export class CredentialStoredDto extends ConnectionViewDto {
  @ApiProperty({
    enum: [...VERIFICATIONS],
    description: 'verified: the provider accepted the key; skipped: verify was false; not_supported: the provider has no way to check one (Copy.ai)',
  })
  verification!: Verification;
  @ApiProperty({ nullable: true, type: ProviderRevocationDto, description: 'the OAuth grant this key replaced, and what its provider was told; null when none' })
  replacedGrant!: ProviderRevocationDto | null;
}

/** How many failed accounts a revoke-all answer names. */
export const MAX_FAILED_ACCOUNTS = 100;

export class RevokeAllResponseDto {
  @ApiProperty() provider!: string;
  @ApiProperty({ description: 'connections holding tokens that this call handled' }) processed!: number;
  @ApiProperty({ description: 'connections whose stored tokens the provider confirmed revoked' }) revokedAtProvider!: number;
  @ApiProperty({ description: 'connections the provider offers no revocation for' }) notSupported!: number;
  @ApiProperty({ description: 'connections where the provider did not confirm (erased locally all the same)' }) failedAtProvider!: number;
  @ApiProperty({ description: 'connections whose tokens this call erased' }) erased!: number;
  @ApiProperty({ description: 'connections another caller revoked while this one ran' }) alreadyRevoked!: number;
  @ApiProperty({ type: [String], description: `accounts counted in failedAtProvider (the first ${MAX_FAILED_ACCOUNTS})` }) failedAccounts!: string[];
  @ApiProperty() message!: string;
}

export class AuditItemDto {
  @ApiProperty({ description: 'when it happened; for token.read, the start of its minute' }) at!: string;
  @ApiProperty({ example: 'billing', description: 'the API key\'s name (never its secret), system, end_user or anonymous' }) actor!: string;
  @ApiProperty({ enum: ['admin', 'service', 'system', 'end_user', 'anonymous'] }) actorKind!: AuditActorKind;
  @ApiProperty({ enum: [...AUDIT_ACTIONS] }) action!: AuditAction;
  @ApiProperty({ nullable: true, type: String }) account!: string | null;
  @ApiProperty({ nullable: true, type: String }) provider!: string | null;
  @ApiProperty({ example: 'served', description: 'what happened, or the error code the caller was answered with' }) outcome!: string;
  @ApiProperty({ description: 'events in this record: token reads of that minute; 1 for anything else' }) count!: number;
  @ApiProperty({ nullable: true, type: String }) requestId!: string | null;
  @ApiProperty({ nullable: true, type: Object, description: 'a few non-secret facts about the outcome' }) detail!: Record<string, unknown> | null;
}

export class AuditPageDto {
  @ApiProperty({ type: [AuditItemDto], description: 'newest first' }) items!: AuditItemDto[];
  @ApiProperty({ nullable: true, type: String, description: 'pass as ?cursor= for the next page; null on the last page' }) nextCursor!: string | null;
}

/** An audit record as the admin API shows it, field by field. */
export function toAuditItem(record: AuditRecord): AuditItemDto {
  return {
    at: record.at.toISOString(),
    actor: record.actor,
    actorKind: record.actorKind,
    action: record.action,
    account: record.account ?? null,
    provider: record.provider ?? null,
    outcome: record.outcome,
    count: record.count ?? 1,
    requestId: record.requestId ?? null,
    detail: record.detail ? { ...record.detail } : null,
  };
}

export class WebhookDeliveryDto implements DeliveryView {
  @ApiProperty({ description: 'the delivery (POST /admin/webhook-deliveries/:id/retry)', example: '42' }) id!: string;
  @ApiProperty({ description: 'the webhook-id header the receiver sees, the same on every attempt' }) webhookId!: string;
  @ApiProperty({ enum: [...LIFECYCLE_EVENT_TYPES] }) type!: LifecycleEventType;
  @ApiProperty({ nullable: true, type: String, description: 'null for provider.misconfigured' }) account!: string | null;
  @ApiProperty() provider!: string;
  @ApiProperty({ description: "the receiving endpoint's origin (the rest of a webhook URL may hold the receiver's secret)" }) endpoint!: string;
  @ApiProperty({ enum: [...DELIVERY_STATUSES], description: 'failed: given up after WEBHOOK_MAX_ATTEMPTS' }) status!: DeliveryStatus;
  @ApiProperty({ description: 'attempts made since it was queued (or last retried by an admin)' }) attempts!: number;
  @ApiProperty({ description: 'when the change happened' }) occurredAt!: string;
  @ApiProperty({ nullable: true, type: String }) lastAttemptAt!: string | null;
  @ApiProperty({ nullable: true, type: String, description: 'pending only: when it is tried next' }) nextAttemptAt!: string | null;
  @ApiProperty({ nullable: true, type: String }) deliveredAt!: string | null;
  @ApiProperty({ nullable: true, type: Number, description: "the last answer's HTTP status; null when none came" }) lastStatus!: number | null;
  @ApiProperty({ nullable: true, type: String, description: 'why the last attempt failed' }) lastError!: string | null;
}

export class WebhookDeliveryPageDto {
  @ApiProperty({ type: [WebhookDeliveryDto], description: 'newest first' }) items!: WebhookDeliveryDto[];
  @ApiProperty({ nullable: true, type: String, description: 'pass as ?cursor= for the next page; null on the last page' }) nextCursor!: string | null;
}
