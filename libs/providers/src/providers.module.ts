import { Module } from '@nestjs/common';
import { ProviderClient } from './provider-client';

/** Provider quirks and the HTTP client that speaks to them. No database, no HTTP routes. */
@Module({ providers: [ProviderClient], exports: [ProviderClient] })
export class ProvidersModule {}
