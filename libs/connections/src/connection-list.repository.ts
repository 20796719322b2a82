import { ConnectionFilter, ConnectionPage, ConnectionStatus } from './connection.model';

/** How many connections one provider has in one status. */
export interface ConnectionCount {
  provider: string;
  status: ConnectionStatus;
  count: number;
}

/**
 * The overview of every connection: the admin list, a page at a time, ordered by account then
 * provider, and the counts the metrics report. The abstract class is the DI token;
 * PostgresConnectionListRepository implements it.
 */
export abstract class ConnectionListRepository {
  /**
   * Up to `limit` connections matching `filter` after `cursor` (null: from the start).
   * @throws InvalidCursorError for a cursor this service did not issue.
   */
  abstract list(filter: ConnectionFilter, cursor: string | null, limit: number): Promise<ConnectionPage>;

  /** Connections by provider and status (one grouped query). */
  abstract countByProviderAndStatus(): Promise<ConnectionCount[]>;
}
