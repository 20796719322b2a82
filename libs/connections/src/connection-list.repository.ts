import { ConnectionFilter, ConnectionPage } from './connection.model';

/**
 * The admin view of every connection, a page at a time, ordered by account then provider. The
 * abstract class is the DI token; PostgresConnectionListRepository implements it.
 */
export abstract class ConnectionListRepository {
  /**
   * Up to `limit` connections matching `filter` after `cursor` (null: from the start).
   * @throws InvalidCursorError for a cursor this service did not issue.
   */
  abstract list(filter: ConnectionFilter, cursor: string | null, limit: number): Promise<ConnectionPage>;
}
