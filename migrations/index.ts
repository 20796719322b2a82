import { CreateConnections1795443000000 } from './1795443000000-CreateConnections';

/** Every migration, in order. A new migration file is added here too. */
export const MIGRATIONS: Array<new () => unknown> = [CreateConnections1795443000000];
