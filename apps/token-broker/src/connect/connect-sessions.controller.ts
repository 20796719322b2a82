import { Caller, CurrentCaller, ServiceAccess, ServiceGrants } from '@app/auth';
import { assertAccountId } from '@app/common';
import { ConnectService } from '@app/connect';
import { AuditLog } from '@app/observability';
import { isProviderId, unknownProviderError } from '@app/providers';
import { Body, Controller, HttpCode, Post, Req, ValidationPipe } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiForbiddenResponse, ApiTags } from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { errorCodeOf } from '../http/error.filter';
import { ConnectSessionResponse, CreateConnectSessionDto } from './connect-session.dto';

@ApiTags('connect')
@ApiBearerAuth()
@Controller('connect-sessions')
export class ConnectSessionsController {
  constructor(
    private readonly connect: ConnectService,
    private readonly grants: ServiceGrants,
    private readonly audit: AuditLog,
  ) {}

  /**
   * A one-time link (30 minutes) to send the end user to. The caller's grants are checked in
   * memory before anything is looked up or stored, so a refusal reads the same whether the
   * account exists or not. Every attempt is audited (`connect_session.create`).
   */
  @Post()
  @HttpCode(201)
  @ServiceAccess()
  @ApiCreatedResponse({ type: ConnectSessionResponse })
  @ApiForbiddenResponse({ description: 'forbidden: not a service key; not_granted: the account or provider is outside its SERVICE_GRANTS' })
  async create(
    @CurrentCaller() caller: Caller,
    @Req() request: FastifyRequest,
    @Body(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true })) body: CreateConnectSessionDto,
  ): Promise<ConnectSessionResponse> {
    let outcome = 'created';
    try {
      assertAccountId(body.account);
      if (!isProviderId(body.provider)) throw unknownProviderError(body.provider);
      this.grants.assertGranted(caller, body.provider, body.account);
      const { connectUrl, expiresAt } = await this.connect.createSession(caller, body);
      return { connectUrl, expiresAt: expiresAt.toISOString() };
    } catch (error) {
      outcome = errorCodeOf(error);
      throw error;
    } finally {
      this.audit.record({
        action: 'connect_session.create',
        actor: caller.name,
        actorKind: 'service',
        account: body.account,
        provider: body.provider,
        outcome,
        requestId: String(request.id),
      });
    }
  }
}
