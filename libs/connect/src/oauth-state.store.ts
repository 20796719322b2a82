import { Clock } from '@app/common';
import { SealContexts, TokenCipher, TokenDecryptError } from '@app/crypto';
import { Logger } from '@nestjs/common';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { ConnectFlowRepository } from './connect-flow.repository';
import { RequestWithConnect } from './connect-context';

export const STATE_TTL_MS = 10 * 60 * 1000;

/** Random bytes in a `state`. */
const STATE_BYTES = 32;

/** Characters in a `state`: STATE_BYTES as unpadded base64url. */
export const STATE_LENGTH = Math.ceil((STATE_BYTES * 4) / 3);

type StoreCallback = (error: Error | null, state?: string) => void;
type VerifyCallback = (error: Error | null, ok?: string | boolean, info?: { message: string }) => void;

export function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * passport-oauth2's `store`: every authorization request gets a fresh 256-bit `state`, kept in
 * Postgres (digest only) with the PKCE verifier (sealed), bound to the provider, the connect
 * session and the browser's binding cookie; single-use, 10-minute lifetime. No express-session,
 * no sticky sessions: any replica can finish a flow another started.
 *
 * Passport picks the call shape by arity, so both methods keep their full parameter lists.
 */
export class OAuthStateStore {
  private readonly logger = new Logger('Connect');

  constructor(
    private readonly repository: ConnectFlowRepository,
    private readonly cipher: TokenCipher,
    private readonly clock: Clock,
  ) {}

  store(req: RequestWithConnect, verifier: string | undefined, _state: unknown, meta: { callbackURL: string }, callback: StoreCallback): void {
    const starting = req.tbConnect.starting;
    if (!starting) {
      callback(new Error('connect flow started without a session'));
      return;
    }
    const state = randomBytes(STATE_BYTES).toString('base64url');
    const stateHash = sha256(state);
    const codeVerifierSealed = verifier ? this.cipher.seal(verifier, SealContexts.codeVerifier(stateHash.toString('hex'))) : null;
    this.repository
      .savePendingAuthorization(stateHash, {
        provider: req.tbConnect.provider,
        sessionId: starting.session.id,
        browserHash: starting.browserHash,
        codeVerifierSealed,
        redirectUri: meta.callbackURL,
        expiresAt: new Date(this.clock.nowMs() + STATE_TTL_MS),
      })
      .then(
        () => callback(null, state),
        (error: Error) => callback(error),
      );
  }

  verify(req: RequestWithConnect, state: unknown, _meta: unknown, callback: VerifyCallback): void {
    const context = req.tbConnect;
    const refuse = (refusal: NonNullable<typeof context.refusal>): void => {
      context.refusal = refusal;
      callback(null, false, { message: refusal });
    };
    if (typeof state !== 'string' || state === '') {
      refuse('missing');
      return;
    }
    const stateHash = sha256(state);
    this.repository
      .takePendingAuthorization(stateHash)
      .then(
        (pending) => {
          if (!pending) return refuse('unknown_or_used');
          context.session = pending.session;
          if (pending.provider !== context.provider) return refuse('other_provider');
          if (pending.expiresAt.getTime() <= this.clock.nowMs()) return refuse('expired');
          const presented = context.browserNonce ? sha256(context.browserNonce) : Buffer.alloc(32);
          if (!timingSafeEqual(presented, pending.browserHash)) return refuse('other_browser');
          let verifier: string | true = true;
          if (pending.codeVerifierSealed) {
            try {
              verifier = this.cipher.open(pending.codeVerifierSealed, SealContexts.codeVerifier(stateHash.toString('hex')));
            } catch (error) {
              // A key missing from the ring or a damaged row: the flow cannot finish, but nothing about it may take the process down.
              context.refusalDetail = error instanceof TokenDecryptError ? `code_verifier ${error.reason}` : 'code_verifier unreadable';
              return refuse('unreadable');
            }
          }
          callback(null, verifier);
        },
        (error: Error) => callback(error),
      )
      // Backstop: whatever Passport does after our callback runs on this promise chain, and a throw
      // there must become a logged error, never an unhandled rejection (which ends the process).
      .catch((error: unknown) => this.logger.error({ err: error }, 'connect callback failed after the state check'));
  }
}
