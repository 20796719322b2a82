import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, IsString, Max, MaxLength, Min } from 'class-validator';
import { MAX_MIN_VALIDITY_SEC } from '@app/tokens';

export class TokenQueryDto {
  @ApiPropertyOptional({ description: 'required when the account has more than one connection', enum: ['copper', 'copernica', 'copyai'] })
  @IsOptional()
  @IsString()
  @MaxLength(32)
  provider?: string;

  @ApiPropertyOptional({ description: 'seconds the token must stay valid (default 60)', minimum: 0, maximum: MAX_MIN_VALIDITY_SEC })
  @IsOptional()
  @Type(() => Number)
  @IsInt({ message: 'minValidity must be a whole number of seconds' })
  @Min(0, { message: 'minValidity must not be negative' })
  @Max(MAX_MIN_VALIDITY_SEC, { message: `minValidity must be at most ${MAX_MIN_VALIDITY_SEC} seconds` })
  minValidity?: number;
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
