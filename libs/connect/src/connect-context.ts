import type { IncomingMessage } from 'node:http';
import type { ConnectSession } from './connect-flow.repository';

/** Why a callback's state was refused; each becomes a clear message for the user. */
export type StateRefusal = 'missing' | 'unknown_or_used' | 'expired' | 'other_provider' | 'other_browser' | 'unreadable';

/**
 * What the connect flow hangs on the raw request while Passport runs, since Passport's store
 * interface only receives the request. Set by ConnectService, read by OAuthStateStore.
 */
export interface ConnectContext {
  provider: string;
  /** The browser-binding cookie's value, if the browser sent one. */
  browserNonce: string | undefined;
  /** When starting: the session being started and the digest of the cookie just set. */
  starting?: { session: ConnectSession; browserHash: Buffer };
  /** Filled in by the store on callback once the state matched a pending authorization. */
  session?: ConnectSession;
  refusal?: StateRefusal;
  /** For the log line of a refusal: why, in words that hold no secret. */
  refusalDetail?: string;
}

export type RequestWithConnect = IncomingMessage & {
  tbConnect: ConnectContext;
  query?: Record<string, unknown>;
  body?: Record<string, unknown>;
};
