import { DomainError, ErrorCode } from '@app/common';
import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Access, ACCESS_KEY } from './access.decorators';
import { CALLER_KEY } from './caller';
import { ApiKeyVerifier } from './api-key-verifier';

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

  /**
   * Access rules by controller class and handler: fixed at start-up, and this guard runs on every
   * request. By class too, because a rule may be set on the class and a handler may be inherited.
   */
  private readonly accessByRoute = new WeakMap<object, WeakMap<object, Access | null>>();

  canActivate(context: ExecutionContext): boolean {
    const access = this.accessOf(context);
    if (!access) throw new DomainError(ErrorCode.Forbidden, 'this route declares no access rule and is closed');
    if (access.kind === 'public') return true;

    const request = context.getArgByIndex<{ headers: Record<string, string | string[] | undefined> } & Record<string, unknown>>(0);
    const caller = this.verifier.authorize(request.headers.authorization, access.role);
    request[CALLER_KEY] = caller;
    return true;
  }

  private accessOf(context: ExecutionContext): Access | null {
    const controller = context.getClass();
    const handler = context.getHandler();
    let byHandler = this.accessByRoute.get(controller);
    if (byHandler === undefined) {
      byHandler = new WeakMap();
      this.accessByRoute.set(controller, byHandler);
    }
    let access = byHandler.get(handler);
    if (access === undefined) {
      access = this.reflector.getAllAndOverride<Access | undefined>(ACCESS_KEY, [handler, controller]) ?? null;
      byHandler.set(handler, access);
    }
    return access;
  }
}
