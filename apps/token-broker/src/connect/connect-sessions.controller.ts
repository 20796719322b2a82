import { Caller, CurrentCaller, ServiceAccess } from '@app/auth';
import { ConnectService } from '@app/connect';
import { Body, Controller, HttpCode, Post, ValidationPipe } from '@nestjs/common';
import { ApiBearerAuth, ApiCreatedResponse, ApiTags } from '@nestjs/swagger';
import { ConnectSessionResponse, CreateConnectSessionDto } from './connect-session.dto';

@ApiTags('connect')
@ApiBearerAuth()
@Controller('connect-sessions')
export class ConnectSessionsController {
  constructor(private readonly connect: ConnectService) {}

  /** A one-time link (30 minutes) to send the end user to. */
  @Post()
  @HttpCode(201)
  @ServiceAccess()
  @ApiCreatedResponse({ type: ConnectSessionResponse })
  async create(
    @CurrentCaller() caller: Caller,
    @Body(new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true, transform: true })) body: CreateConnectSessionDto,
  ): Promise<ConnectSessionResponse> {
    const { connectUrl, expiresAt } = await this.connect.createSession(caller, body);
    return { connectUrl, expiresAt: expiresAt.toISOString() };
  }
}
