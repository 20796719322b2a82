/**
 * Test-only reads of the plaintext tokens a broker stores, to prove what it holds (and that it
 * never hands them out). Production never opens a connection by (account, provider) outside
 * the token read path, so this stays off the repositories' interfaces.
 */
import { ConnectionRepository, ConnectionSealer, ConnectionWithTokens } from '@app/connections';
import { INestApplicationContext } from '@nestjs/common';

export class StoredTokens {
  constructor(
    private readonly connections: ConnectionRepository,
    private readonly sealer: ConnectionSealer,
  ) {}

  /** Through a running broker's own repository and sealer (its key ring). */
  static of(app: INestApplicationContext): StoredTokens {
    return new StoredTokens(app.get(ConnectionRepository), app.get(ConnectionSealer));
  }

  /**
   * The connection with its tokens opened, or null when there is none.
   * @throws ConnectionUnreadableError when a stored value does not open.
   */
  async find(account: string, provider: string): Promise<ConnectionWithTokens | null> {
    const sealed = (await this.connections.findSealedByAccount(account)).find((c) => c.record.provider === provider);
    return sealed ? this.sealer.unseal(sealed) : null;
  }
}
