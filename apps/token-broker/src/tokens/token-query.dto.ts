import { DomainError, ErrorCode } from '@app/common';
import { DEFAULT_MIN_VALIDITY_SEC, MAX_MIN_VALIDITY_SEC } from '@app/tokens';
import { ApiProperty } from '@nestjs/swagger';

export interface TokenQuery {
  provider?: string;
  minValiditySec: number;
}

/**
 * Reads `?provider=&minValidity=`. Written by hand rather than as a class-validator DTO: this is
 * the hot path, and class-transformer + class-validator cost a quarter of its throughput
 * (measured with `npm run bench`, see bench/results/variants). The rules are the DTO's would be.
 */
export function parseTokenQuery(query: Record<string, unknown>): TokenQuery {
  const problems: string[] = [];
  for (const key of Object.keys(query)) {
    if (key !== 'provider' && key !== 'minValidity') problems.push(`property ${key} should not exist`);
  }
  const { provider, minValidity } = query;
  if (provider !== undefined && (typeof provider !== 'string' || provider.length > 32)) {
    problems.push('provider must be one provider id');
  }
  let minValiditySec = DEFAULT_MIN_VALIDITY_SEC;
  if (minValidity !== undefined) {
    const value = typeof minValidity === 'string' && /^-?\d+$/.test(minValidity) ? Number(minValidity) : NaN;
    if (!Number.isInteger(value)) problems.push('minValidity must be a whole number of seconds');
    else if (value < 0) problems.push('minValidity must not be negative');
    else if (value > MAX_MIN_VALIDITY_SEC) problems.push(`minValidity must be at most ${MAX_MIN_VALIDITY_SEC} seconds`);
    else minValiditySec = value;
  }
  if (problems.length > 0) throw new DomainError(ErrorCode.ValidationFailed, problems.join('; '));
  return { provider: provider as string | undefined, minValiditySec };
}

class TokenApplyDto {
  @ApiProperty({ example: { Authorization: 'Bearer …' } }) headers!: Record<string, string>;
  @ApiProperty({ example: {} }) query!: Record<string, string>;
}

export class TokenResponseDto {
  @ApiProperty() account!: string;
  @ApiProperty() provider!: string;
  @ApiProperty() accessToken!: string;
  @ApiProperty() tokenType!: string;
  @ApiProperty({ nullable: true, type: String, description: 'null: the token does not expire' }) expiresAt!: string | null;
  @ApiProperty({ nullable: true, type: String }) scope!: string | null;
  @ApiProperty({ type: TokenApplyDto, description: 'how to present the token to the provider API' }) apply!: TokenApplyDto;
}

const stringMap = { type: 'object', additionalProperties: { type: 'string' } } as const;

/**
 * The 200 answer as JSON Schema, for Fastify's compiled serializer (fast-json-stringify): about
 * twice as fast as JSON.stringify for this shape, on the hot path. It must list every field of
 * TokenResponseDto: a field missing here would be left out of the answer.
 */
export const TOKEN_RESPONSE_SCHEMA = {
  type: 'object',
  required: ['account', 'provider', 'accessToken', 'tokenType', 'expiresAt', 'scope', 'apply'],
  properties: {
    account: { type: 'string' },
    provider: { type: 'string' },
    accessToken: { type: 'string' },
    tokenType: { type: 'string' },
    expiresAt: { type: ['string', 'null'] },
    scope: { type: ['string', 'null'] },
    apply: { type: 'object', required: ['headers', 'query'], properties: { headers: stringMap, query: stringMap } },
  },
} as const;
