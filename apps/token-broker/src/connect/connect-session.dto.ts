import { PROVIDER_IDS } from '@app/providers';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, MaxLength } from 'class-validator';

export class CreateConnectSessionDto {
  @ApiProperty({ example: 'acme-42', description: 'your id for the end user or tenant; ^[A-Za-z0-9._:@-]{1,128}$' })
  @IsString()
  @MaxLength(128)
  account!: string;

  // An unknown id is the service's provider_unknown (with the known ids), not a validation failure.
  @ApiProperty({ enum: [...PROVIDER_IDS] })
  @IsString()
  @MaxLength(32)
  provider!: string;

  @ApiPropertyOptional({ example: 'http://localhost:5173/integrations', description: 'where the browser goes afterwards; origin must be in CONNECT_RETURN_ORIGINS' })
  @IsOptional()
  @IsString()
  @MaxLength(2048)
  returnTo?: string;
}

export class ConnectSessionResponse {
  @ApiProperty() connectUrl!: string;
  @ApiProperty() expiresAt!: string;
}
