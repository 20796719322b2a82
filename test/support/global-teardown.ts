import type { EmbeddedPostgresServer } from '@app/development';
import { rmSync } from 'node:fs';

export default async function globalTeardown(): Promise<void> {
  const embedded = (globalThis as { __TEST_POSTGRES__?: EmbeddedPostgresServer }).__TEST_POSTGRES__;
  if (!embedded) return;
  await embedded.stop();
  rmSync(embedded.dataDir, { recursive: true, force: true });
}
