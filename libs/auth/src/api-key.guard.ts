import { DomainError, ErrorCode } from '@app/common';
import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Access, ACCESS_KEY } from './access.decorators';
import { CALLER_KEY } from './caller';
import { ApiKeyVerifier, AuthAttempt } from './api-key-verifier';

/**
 * Global guard. Denies by default: a route must be marked @Public(), @ServiceAccess() or
 * @AdminAccess(). A service key never opens an admin route; an admin key is not a service key.
 */
@Injectable()
export class ApiKeyGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly verifier: ApiKeyVerifier,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    const access = this.reflector.getAllAndOverride<Access | undefined>(ACCESS_KEY, [context.getHandler(), context.getClass()]);
    const request = context.switchToHttp().getRequest<AuthAttempt & { headers: Record<string, string | string[] | undefined> } & Record<string, unknown>>();
    if (!access) throw this.verifier.denied(request, undefined, new DomainError(ErrorCode.Forbidden, 'this route declares no access rule and is closed'));
    if (access.kind === 'public') return true;

    const caller = this.verifier.authorize(request.headers.authorization, access.role, request);
    request[CALLER_KEY] = caller;
    return true;
  }
}
