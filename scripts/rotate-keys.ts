/**
 * `npm run keys:rotate`: re-seals every stored token under the active key of
 * TOKEN_ENCRYPTION_KEYS, in batches, while the broker keeps serving (see
 * libs/connections/src/key-rotation.ts for why that is safe).
 *
 * To rotate keys (key ids are examples; generate a key with
 * `node -e "console.log(require('crypto').randomBytes(32).toString('base64'))"`):
 *
 *   1. Put the new key first: TOKEN_ENCRYPTION_KEYS=new:<base64>,old:<base64>
 *      With several replicas, first roll out `old:…,new:…` (new key known, not yet used) and
 *      only then `new:…,old:…`: during a rolling restart a replica that does not know the new
 *      key yet cannot open a token another replica just sealed under it.
 *   2. Restart or roll every replica with that value.
 *   3. Run `npm run keys:rotate` with the same environment (same DATABASE_URL, or same
 *      DATA_DIR for the embedded database: then stop the broker first, or point DATABASE_URL at
 *      its server, as the command explains when it refuses).
 *   4. When the summary shows no rows left under the old key, drop it from
 *      TOKEN_ENCRYPTION_KEYS and roll the replicas again. Running the command twice is harmless.
 *
 * Options: --batch-size=<rows> (default 500; smaller holds fewer row locks at a time).
 * Prints progress and a summary (rows re-sealed, rows/s, rows per key id before and after);
 * never a key, a token or the database URL. Exit codes: 0 done; 1 failure (one line says why,
 * e.g. which connection is sealed under which missing key id); 75 rows stayed locked or were
 * re-sealed under an old key by a replica, run again; 78 bad configuration.
 */
import { PostgresAuditRepository } from '@app/audit';
import { KeyRotationIncompleteError, KeyRotationRepository, rotateKeys } from '@app/connections';
import { KeyRing, TokenCipher } from '@app/crypto';
import { userInfo } from 'node:os';
import { DataSource } from 'typeorm';
import { CliError, EXIT_TEMPFAIL, openCliContext, requireMigrationsApplied, runCli } from './cli-context';

const COMMAND = 'keys:rotate';
const PROGRESS_EVERY_MS = 1_000;

interface Options {
  batchSize: number;
}

function parseOptions(argv: string[]): Options | 'help' {
  const options: Options = { batchSize: 500 };
  for (const arg of argv) {
    if (arg === '--help' || arg === '-h') return 'help';
    const batch = /^--batch-size=(\d+)$/.exec(arg);
    if (batch && Number(batch[1]) >= 1 && Number(batch[1]) <= 10_000) {
      options.batchSize = Number(batch[1]);
      continue;
    }
    throw new CliError(`unknown or invalid argument "${arg}" (expected --batch-size=<1..10000> or --help)`, 64);
  }
  return options;
}

function formatCounts(counts: Record<string, number>, ring: KeyRing): string {
  const entries = Object.entries(counts);
  if (entries.length === 0) return 'no stored tokens';
  return entries
    .map(([kid, count]) => `${kid}=${count}${kid === ring.activeKid ? ' (active)' : ring.has(kid) ? '' : ' (NOT IN RING)'}`)
    .join(', ');
}

runCli(COMMAND, async () => {
  const options = parseOptions(process.argv.slice(2));
  if (options === 'help') {
    console.log('usage: npm run keys:rotate [-- --batch-size=<rows>]   (see the header of scripts/rotate-keys.ts)');
    return;
  }

  const context = await openCliContext();
  try {
    console.log(`${COMMAND}: ${context.databaseLabel}`);
    await requireMigrationsApplied(context.dataSource);

    // Already validated by loadConfig; the ring is the one the broker builds from the same value.
    const ring = KeyRing.parse(context.config.tokenEncryptionKeys);
    const repository = new KeyRotationRepository(context.dataSource, new TokenCipher(ring));
    console.log(`${COMMAND}: active key "${ring.activeKid}"; ring holds ${ring.kids.map((k) => `"${k}"`).join(', ')}`);

    const before = await repository.countByKeyId();
    console.log(`${COMMAND}: before: ${formatCounts(before, ring)}`);

    let lastPrintedAt = 0;
    let lastPrinted = { resealed: -1, remaining: -1 };
    const rotation = rotateKeys(repository, {
      batchSize: options.batchSize,
      activeKeyId: ring.activeKid,
      onProgress: ({ resealed, remaining, elapsedMs }) => {
        // Once a second, and when the end is reached (the confirming empty batch repeats it: skip that).
        if (remaining > 0 && elapsedMs - lastPrintedAt < PROGRESS_EVERY_MS) return;
        if (resealed === lastPrinted.resealed && remaining === lastPrinted.remaining) return;
        lastPrintedAt = elapsedMs;
        lastPrinted = { resealed, remaining };
        const rate = elapsedMs > 0 ? Math.round((resealed * 1000) / elapsedMs) : 0;
        console.log(`${COMMAND}:   ${resealed} re-sealed, ${remaining === 0 ? 'none' : `about ${remaining}`} left, ${rate} rows/s`);
      },
    });
    const result = await rotation.catch(async (error: unknown) => {
      const incomplete = error instanceof KeyRotationIncompleteError;
      await recordRotation(context.dataSource, incomplete ? 'incomplete' : 'failed', { activeKeyId: ring.activeKid });
      if (incomplete) throw new CliError(error.message, EXIT_TEMPFAIL);
      throw error;
    });
    await recordRotation(context.dataSource, 'rotated', { activeKeyId: ring.activeKid, resealed: result.resealed, remainingByKey: result.remainingByKey });

    console.log(
      `${COMMAND}: done: ${result.resealed} row(s) re-sealed in ${(result.elapsedMs / 1000).toFixed(1)} s (${result.rowsPerSecond} rows/s)`,
    );
    console.log(`${COMMAND}: after:  ${formatCounts(result.remainingByKey, ring)}`);
    const droppable = ring.kids.filter((kid) => kid !== ring.activeKid && !result.remainingByKey[kid]);
    if (droppable.length > 0) {
      console.log(
        `${COMMAND}: no rows left under ${droppable.map((k) => `"${k}"`).join(', ')}: once every replica runs with ` +
          `"${ring.activeKid}" first, remove ${droppable.length === 1 ? 'it' : 'them'} from TOKEN_ENCRYPTION_KEYS and roll the replicas.`,
      );
    }
  } finally {
    await context.close();
  }
});

/**
 * The audit record of this run (`keys.rotate`, DESIGN's audit trail), written straight to the
 * audit table: no broker runs here to buffer it. The actor is the operating-system user who ran
 * the command; key ids and counts are no secret. A failure to record is said, not fatal: the
 * rotation itself is done.
 */
async function recordRotation(dataSource: DataSource, outcome: string, detail: Record<string, unknown>): Promise<void> {
  try {
    await new PostgresAuditRepository(dataSource).insert([
      { at: new Date(), action: 'keys.rotate', actor: operator(), actorKind: 'admin', outcome, detail },
    ]);
  } catch (error) {
    console.error(`${COMMAND}: could not record the rotation in the audit trail: ${(error as Error).message}`);
  }
}

/** Who ran the command, as an audit actor (a key-name-like word). */
function operator(): string {
  let name = '';
  try {
    name = userInfo().username;
  } catch {
    // no user database entry (a container's arbitrary uid)
  }
  const word = name.replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 64);
  return word || 'cli';
}
