import { PROVIDER_IDS } from '@app/providers';
import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { AuthMode } from '@app/connections';
import { IsIn, IsOptional, IsString, MaxLength } from 'class-validator';

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

  @ApiPropertyOptional({
    enum: AuthMode,
    default: AuthMode.OAuth2,
    description:
      'oauth2: the link starts the provider\'s OAuth dance; api_key: the link opens a form where the end user enters an API key ' +
      '(Copper: with the email of its owner), checked with the provider and stored like an admin-entered key',
  })
  @IsOptional()
  @IsIn(Object.values(AuthMode))
  authMode?: AuthMode;
}

export class ConnectSessionResponse {
  @ApiProperty() connectUrl!: string;
  @ApiProperty() expiresAt!: string;
}
