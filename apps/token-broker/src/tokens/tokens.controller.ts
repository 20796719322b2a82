import { ServiceAccess } from '@app/auth';
import { assertAccountId } from '@app/common';
import { DEFAULT_MIN_VALIDITY_SEC, TokenService } from '@app/tokens';
import { Controller, Get, Header, Param, Query } from '@nestjs/common';
import { ApiBearerAuth, ApiOkResponse, ApiTags } from '@nestjs/swagger';
import { TokenQueryDto, TokenResponseDto } from './token-query.dto';

@ApiTags('tokens')
@ApiBearerAuth()
@Controller('tokens')
export class TokensController {
  constructor(private readonly tokens: TokenService) {}

  /** A token valid now (for at least minValidity seconds), with how to apply it. */
  @Get(':account')
  @ServiceAccess()
  @Header('cache-control', 'no-store')
  @ApiOkResponse({ type: TokenResponseDto })
  async get(@Param('account') account: string, @Query() query: TokenQueryDto): Promise<TokenResponseDto> {
    assertAccountId(account);
    return this.tokens.tokenFor(account, query.provider, query.minValidity ?? DEFAULT_MIN_VALIDITY_SEC);
  }
}
