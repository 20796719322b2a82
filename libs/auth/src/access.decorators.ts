import { createParamDecorator, ExecutionContext, SetMetadata } from '@nestjs/common';
import { Caller, CALLER_KEY, CallerRole } from './caller';

export const ACCESS_KEY = 'tokenBrokerAccess';
export type Access = { kind: 'public' } | { kind: 'role'; role: CallerRole };

/**
 * Every route says who may call it: @Public(), @ServiceAccess() or @AdminAccess().
 * A route with none of these is refused (the guard denies by default) and fails the
 * route-inventory test.
 */
export const Public = (): MethodDecorator & ClassDecorator => SetMetadata(ACCESS_KEY, { kind: 'public' } satisfies Access);
export const ServiceAccess = (): MethodDecorator & ClassDecorator =>
  SetMetadata(ACCESS_KEY, { kind: 'role', role: 'service' } satisfies Access);
export const AdminAccess = (): MethodDecorator & ClassDecorator =>
  SetMetadata(ACCESS_KEY, { kind: 'role', role: 'admin' } satisfies Access);

export const CurrentCaller = createParamDecorator((_data: unknown, context: ExecutionContext): Caller | undefined => {
  const request = context.switchToHttp().getRequest<Record<string, unknown>>();
  return request[CALLER_KEY] as Caller | undefined;
});
