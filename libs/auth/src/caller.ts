/** Who is calling: a service (reads tokens, opens connect sessions) or an admin. */
export type CallerRole = 'service' | 'admin';

export interface Caller {
  readonly name: string;
  readonly role: CallerRole;
}

/** Set on the raw request by ApiKeyGuard; read with @CurrentCaller(). */
export const CALLER_KEY = 'tokenBrokerCaller';
