/**
 * Runs in every suite of the jest `database` project (setupFilesAfterEnv): once the suite is done
 * the shared test database is emptied, so rows a spec sealed under keys of its own never reach a
 * later suite, where a broker's key-coverage readiness check would fail on them.
 */
import { openTestDataSource, truncateAll } from './test-database';

afterAll(async () => {
  const dataSource = await openTestDataSource();
  try {
    await truncateAll(dataSource);
  } finally {
    await dataSource.destroy();
  }
});
