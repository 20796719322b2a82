import type { EmbeddedPostgresServer } from '@app/database';

export default async function globalTeardown(): Promise<void> {
  const embedded = (globalThis as { __TEST_POSTGRES__?: EmbeddedPostgresServer }).__TEST_POSTGRES__;
  await embedded?.stop();
}
