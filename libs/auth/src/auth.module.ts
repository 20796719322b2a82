import { Module } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { ApiKeyGuard } from './api-key.guard';
import { ApiKeyVerifier } from './api-key-verifier';
import { ServiceGrants } from './service-grants';

/** Caller authentication for every route (see ApiKeyGuard), and what each service key is granted (ServiceGrants). Knows nothing of OAuth. */
@Module({
  providers: [ApiKeyVerifier, ServiceGrants, { provide: APP_GUARD, useClass: ApiKeyGuard }],
  exports: [ApiKeyVerifier, ServiceGrants],
})
export class AuthModule {}
