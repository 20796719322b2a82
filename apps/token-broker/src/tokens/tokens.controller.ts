import { ServiceAccess } from '@app/auth';
import { assertAccountId } from '@app/common';
import { IssuedToken, MAX_MIN_VALIDITY_SEC, TokenService } from '@app/tokens';
import { Controller, Get, Header, Param, Query } from '@nestjs/common';
import { RouteSchema } from '@nestjs/platform-fastify';
import { ApiBearerAuth, ApiOkResponse, ApiQuery, ApiTags } from '@nestjs/swagger';
import { parseTokenQuery, TOKEN_RESPONSE_SCHEMA, TokenResponseDto } from './token-query.dto';

@ApiTags('tokens')
@ApiBearerAuth()
@Controller('tokens')
export class TokensController {
  constructor(private readonly tokens: TokenService) {}

  /** A token valid now (for at least minValidity seconds), with how to apply it. */
  @Get(':account')
  @ServiceAccess()
  @Header('cache-control', 'no-store')
  @RouteSchema({ response: { 200: TOKEN_RESPONSE_SCHEMA } })
  @ApiOkResponse({ type: TokenResponseDto })
  @ApiQuery({ name: 'provider', required: false, enum: ['copper', 'copernica', 'copyai'], description: 'required when the account has several connections' })
  @ApiQuery({ name: 'minValidity', required: false, type: Number, description: `seconds the token must stay valid, 0-${MAX_MIN_VALIDITY_SEC} (default 60)` })
  get(@Param('account') account: string, @Query() query: Record<string, unknown>): IssuedToken | Promise<IssuedToken> {
    assertAccountId(account);
    const { provider, minValiditySec } = parseTokenQuery(query);
    return this.tokens.tokenFor(account, provider, minValiditySec);
  }
}
