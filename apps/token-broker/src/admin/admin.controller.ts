import { AdminAccess, Caller, CurrentCaller } from '@app/auth';
import { ConnectionStatus, LIFECYCLE_EVENT_TYPES } from '@app/connections';
import { AUDIT_ACTIONS } from '@app/observability';
import { PROVIDER_IDS } from '@app/providers';
import { DELIVERY_STATUSES } from '@app/webhooks';
import { Body, Controller, Get, Header, HttpCode, Param, Post, Put, Query, Req } from '@nestjs/common';
import { ApiBearerAuth, ApiBody, ApiOkResponse, ApiOperation, ApiQuery, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './admin-query';
import {
  AuditPageDto,
  ConnectionPageDto,
  ConnectionViewDto,
  CredentialStoredDto,
  RefreshResponseDto,
  RevokeAllResponseDto,
  RevokeResponseDto,
  StoreCredentialBodyDto,
  WebhookDeliveryDto,
  WebhookDeliveryPageDto,
} from './admin.dto';
import { AdminRequest, AdminService } from './admin.service';

const PROVIDER_QUERY = {
  name: 'provider',
  required: false,
  enum: [...PROVIDER_IDS],
  description: 'required when the account has several connections',
} as const;

/**
 * /admin: for on-call engineers holding an admin key (a service key gets 403). Answers never
 * carry a token. Input is handed to AdminService as it came, so that a call refused for bad input
 * is audited like any other (AdminService validates inside the audited attempt).
 */
@ApiTags('admin')
@ApiBearerAuth()
@AdminAccess()
@Controller('admin')
export class AdminController {
  constructor(private readonly admin: AdminService) {}

  @Get('connections')
  @Header('cache-control', 'no-store')
  @ApiOperation({ summary: 'connections, a page at a time, ordered by account then provider' })
  @ApiOkResponse({ type: ConnectionPageDto })
  @ApiQuery({ name: 'provider', required: false, enum: [...PROVIDER_IDS] })
  @ApiQuery({ name: 'status', required: false, enum: ConnectionStatus })
  @ApiQuery({ name: 'cursor', required: false, type: String, description: 'nextCursor of the previous page' })
  @ApiQuery({ name: 'limit', required: false, type: Number, description: `page size, 1-${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE})` })
  async list(@CurrentCaller() caller: Caller, @Req() request: FastifyRequest, @Query() query: Record<string, unknown>): Promise<ConnectionPageDto> {
    return this.admin.list(asking(caller, request), query);
  }

  @Get('connections/:account')
  @Header('cache-control', 'no-store')
  @ApiOperation({ summary: 'one connection' })
  @ApiOkResponse({ type: ConnectionViewDto })
  @ApiQuery(PROVIDER_QUERY)
  async get(
    @CurrentCaller() caller: Caller,
    @Req() request: FastifyRequest,
    @Param('account') account: string,
    @Query() query: Record<string, unknown>,
  ): Promise<ConnectionViewDto> {
    return this.admin.get(asking(caller, request), account, query);
  }

  @Put('connections/:account/credentials')
  @HttpCode(200)
  @Header('cache-control', 'no-store')
  @ApiOperation({
    summary: 'store a static credential (API key) for the account, in place of whatever it held',
    description:
      'The key is checked with the provider as it will be applied (Copper: GET /users/me with the X-PW-* headers; Copernica: GET /identity; ' +
      'Copy.ai has no check: verification not_supported) unless verify is false. An OAuth grant it replaces is revoked at the provider first ' +
      'where it can be. 400 for a missing or malformed field, 422 credential_rejected when the provider refused the key, ' +
      '503 provider_unavailable when the check could not run: in those cases nothing is stored.',
  })
  @ApiBody({ type: StoreCredentialBodyDto })
  @ApiOkResponse({ type: CredentialStoredDto })
  @ApiQuery({ name: 'provider', required: true, enum: [...PROVIDER_IDS] })
  async storeCredential(
    @CurrentCaller() caller: Caller,
    @Req() request: FastifyRequest,
    @Param('account') account: string,
    @Query() query: Record<string, unknown>,
    @Body() body: unknown,
  ): Promise<CredentialStoredDto> {
    return this.admin.storeCredential(asking(caller, request), account, query, body);
  }

  @Post('connections/:account/revoke')
  @HttpCode(200)
  @Header('cache-control', 'no-store')
  @ApiOperation({
    summary: 'revoke at the provider (RFC 7009) where it has an endpoint, then erase the tokens locally',
    description: 'Always 200 once the tokens are erased locally, even when the provider failed: `atProvider` says what happened there. Idempotent.',
  })
  @ApiOkResponse({ type: RevokeResponseDto })
  @ApiQuery(PROVIDER_QUERY)
  async revoke(
    @CurrentCaller() caller: Caller,
    @Req() request: FastifyRequest,
    @Param('account') account: string,
    @Query() query: Record<string, unknown>,
  ): Promise<RevokeResponseDto> {
    return this.admin.revoke(asking(caller, request), account, query);
  }

  @Post('connections/:account/refresh')
  @HttpCode(200)
  @Header('cache-control', 'no-store')
  @ApiOperation({
    summary: 'refresh now, whatever the expiry or backoff',
    description:
      '200 with the new expiry; otherwise an error carrying `outcome`: 409 not_refreshable / needs_reauth / revoked, ' +
      '502 provider_misconfigured, 503 provider_unavailable or refresh_in_progress (with Retry-After).',
  })
  @ApiOkResponse({ type: RefreshResponseDto })
  @ApiQuery(PROVIDER_QUERY)
  async refresh(
    @CurrentCaller() caller: Caller,
    @Req() request: FastifyRequest,
    @Param('account') account: string,
    @Query() query: Record<string, unknown>,
  ): Promise<RefreshResponseDto> {
    return this.admin.refresh(asking(caller, request), account, query);
  }

  @Get('audit')
  @Header('cache-control', 'no-store')
  @ApiOperation({
    summary: 'the audit trail, newest first: who did what (token reads aggregated per minute, with a count)',
    description: 'Filters combine; `since` is inclusive and `until` exclusive (ISO 8601 times). Never a secret.',
  })
  @ApiOkResponse({ type: AuditPageDto })
  @ApiQuery({ name: 'account', required: false, type: String })
  @ApiQuery({ name: 'provider', required: false, enum: [...PROVIDER_IDS] })
  @ApiQuery({ name: 'actor', required: false, type: String, description: 'a key name, system, end_user or anonymous' })
  @ApiQuery({ name: 'action', required: false, enum: [...AUDIT_ACTIONS] })
  @ApiQuery({ name: 'since', required: false, type: String, description: 'ISO 8601 time, inclusive' })
  @ApiQuery({ name: 'until', required: false, type: String, description: 'ISO 8601 time, exclusive' })
  @ApiQuery({ name: 'cursor', required: false, type: String, description: 'nextCursor of the previous page' })
  @ApiQuery({ name: 'limit', required: false, type: Number, description: `page size, 1-${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE})` })
  async audit(@CurrentCaller() caller: Caller, @Req() request: FastifyRequest, @Query() query: Record<string, unknown>): Promise<AuditPageDto> {
    return this.admin.auditRecords(asking(caller, request), query);
  }

  @Get('webhook-deliveries')
  @Header('cache-control', 'no-store')
  @ApiOperation({
    summary: 'lifecycle events and their delivery to each WEBHOOK_URLS endpoint, newest first',
    description: 'pending: not delivered yet (retried with backoff); delivered: a 2xx came back; failed: given up after WEBHOOK_MAX_ATTEMPTS. Filters combine.',
  })
  @ApiOkResponse({ type: WebhookDeliveryPageDto })
  @ApiQuery({ name: 'status', required: false, enum: [...DELIVERY_STATUSES] })
  @ApiQuery({ name: 'type', required: false, enum: [...LIFECYCLE_EVENT_TYPES] })
  @ApiQuery({ name: 'account', required: false, type: String })
  @ApiQuery({ name: 'cursor', required: false, type: String, description: 'nextCursor of the previous page' })
  @ApiQuery({ name: 'limit', required: false, type: Number, description: `page size, 1-${MAX_PAGE_SIZE} (default ${DEFAULT_PAGE_SIZE})` })
  async webhookDeliveries(@CurrentCaller() caller: Caller, @Req() request: FastifyRequest, @Query() query: Record<string, unknown>): Promise<WebhookDeliveryPageDto> {
    return this.admin.webhookDeliveries(asking(caller, request), query);
  }

  @Post('webhook-deliveries/:id/retry')
  @HttpCode(200)
  @Header('cache-control', 'no-store')
  @ApiOperation({
    summary: 'deliver a failed (given up) event again, with the same webhook-id and a fresh attempt budget',
    description: '404 delivery_not_found; 409 delivery_not_failed when it is pending or delivered.',
  })
  @ApiOkResponse({ type: WebhookDeliveryDto })
  async retryWebhookDelivery(
    @CurrentCaller() caller: Caller,
    @Req() request: FastifyRequest,
    @Param('id') id: string,
    @Query() query: Record<string, unknown>,
  ): Promise<WebhookDeliveryDto> {
    return this.admin.retryWebhookDelivery(asking(caller, request), id, query);
  }

  @Post('providers/:provider/revoke-all')
  @HttpCode(200)
  @Header('cache-control', 'no-store')
  @ApiOperation({
    summary: 'revoke every connection of a provider that still holds tokens (e.g. after a client secret leaked)',
    description: 'Revoked connections are skipped, so calling it again resumes an interrupted run. 404 for an unknown or unconfigured provider.',
  })
  @ApiOkResponse({ type: RevokeAllResponseDto })
  async revokeAll(
    @CurrentCaller() caller: Caller,
    @Req() request: FastifyRequest,
    @Param('provider') provider: string,
    @Query() query: Record<string, unknown>,
  ): Promise<RevokeAllResponseDto> {
    return this.admin.revokeAll(asking(caller, request), provider, query);
  }
}

function asking(caller: Caller, request: FastifyRequest): AdminRequest {
  return { caller, requestId: String(request.id) };
}
