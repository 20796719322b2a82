/**
 * `npm run migration:run | migration:revert | migration:show`: apply pending migrations, revert
 * the last one, or list their state, against the broker's database (DATABASE_URL, or the
 * embedded one under DATA_DIR when no broker is running on it). New migrations are written by
 * hand in migrations/ as `<epoch-ms>-<PascalName>.ts` and added to migrations/index.ts.
 */
import { pendingMigrations, runPendingMigrations } from '@app/database';
import { CliError, openCliContext, runCli } from './cli-context';

const command = process.argv[2];

runCli(`migration:${command ?? '?'}`, async () => {
  if (!['run', 'revert', 'show'].includes(command ?? '')) throw new CliError('usage: migration.ts run|revert|show', 64);
  const context = await openCliContext().catch((error: unknown) => {
    // A database whose migrations are pending is exactly what `run` is for.
    if (command === 'run' && error instanceof CliError && /migration/i.test(error.message)) return undefined;
    throw error;
  });
  if (!context) throw new CliError('the database has pending migrations; start the broker once, or use DATABASE_URL with migration:run');
  try {
    if (command === 'run') {
      const applied = await runPendingMigrations(context.dataSource);
      console.log(applied.length ? `applied: ${applied.join(', ')}` : 'nothing to apply');
    } else if (command === 'revert') {
      await context.dataSource.undoLastMigration({ transaction: 'each' });
      console.log('reverted the last migration');
    } else {
      const pending = await pendingMigrations(context.dataSource);
      for (const m of context.dataSource.migrations) console.log(`${pending.includes(m.name ?? '') ? '[ ]' : '[x]'} ${m.name}`);
    }
  } finally {
    await context.close();
  }
});
