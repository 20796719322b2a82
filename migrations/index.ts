/** Every migration, in order. A new migration file is added here too. */
export const MIGRATIONS: Function[] = [];
