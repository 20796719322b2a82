import { PROVIDER_DEFINITIONS } from '@app/providers';
import { readFileSync, statSync } from 'node:fs';

/**
 * Every variable that holds a secret. Each may be given instead as `<NAME>_FILE`: the path of a
 * file holding the value, as a mounted Kubernetes or Docker secret provides it, so the value
 * never sits in the process environment or the pod spec.
 */
export const SECRET_VARIABLES: ReadonlyArray<string> = [
  'DATABASE_URL',
  'TOKEN_ENCRYPTION_KEYS',
  'SERVICE_API_KEYS',
  'ADMIN_API_KEYS',
  'WEBHOOK_SECRET',
  ...PROVIDER_DEFINITIONS.map((definition) => `${definition.envPrefix}_CLIENT_SECRET`),
];

/** A secret is a line or a few: a larger file is a wrong path (a log, a device), not a secret. */
const MAX_SECRET_FILE_BYTES = 64 * 1024;

export interface SecretFileOptions {
  /**
   * The group the broker runs as. A file readable by this group only is not reported: a
   * Kubernetes secret volume is always group-readable by the pod's fsGroup, which is the
   * broker's own group when runAsGroup equals it.
   */
  readonly gid?: number;
}

/**
 * The environment with each `<NAME>_FILE` read into `<NAME>`: the file's content with its
 * trailing newlines removed. Setting both forms, or a file that cannot be read or is empty, is
 * a problem; a file other users (or another group) may read is a notice. Neither ever quotes a
 * value. Returns `env` itself when no `_FILE` variable is set.
 */
export function readSecretFiles(env: NodeJS.ProcessEnv, problems: string[], notices: string[], options: SecretFileOptions = {}): NodeJS.ProcessEnv {
  const gid = options.gid ?? process.getegid?.();
  let resolved: NodeJS.ProcessEnv | undefined;
  for (const name of SECRET_VARIABLES) {
    const fileVariable = `${name}_FILE`;
    const path = env[fileVariable]?.trim();
    if (!path) continue;
    if (env[name]?.trim()) {
      problems.push(`${name} and ${fileVariable}: both are set; give the value one way only`);
      continue;
    }
    const value = readSecretFile(fileVariable, path, gid, problems, notices);
    if (value !== undefined) (resolved ??= { ...env })[name] = value;
  }
  return resolved ?? env;
}

function readSecretFile(variable: string, path: string, gid: number | undefined, problems: string[], notices: string[]): string | undefined {
  let content: string;
  try {
    const stats = statSync(path);
    if (!stats.isFile()) {
      problems.push(`${variable}: ${path} is not a regular file`);
      return undefined;
    }
    if (stats.size > MAX_SECRET_FILE_BYTES) {
      problems.push(`${variable}: ${path} is larger than ${MAX_SECRET_FILE_BYTES / 1024} KB; expected the secret alone`);
      return undefined;
    }
    const exposure = exposureOf(stats.mode, stats.gid, gid);
    if (exposure) {
      notices.push(`${variable}: ${path} is readable by ${exposure} (mode ${(stats.mode & 0o777).toString(8).padStart(4, '0')}); restrict it to the broker's user (chmod 600)`);
    }
    content = readFileSync(path, 'utf8');
  } catch (error) {
    // The error code says enough (ENOENT, EACCES); the message would repeat the path.
    problems.push(`${variable}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'unreadable'})`);
    return undefined;
  }
  const value = content.replace(/[\r\n]+$/, '');
  if (value.trim() === '') {
    problems.push(`${variable}: ${path} is empty`);
    return undefined;
  }
  return value;
}

/** Who besides the broker's user may read a file of this mode, or undefined when nobody may. */
function exposureOf(mode: number, fileGid: number, ownGid: number | undefined): string | undefined {
  if (mode & 0o004) return 'every user';
  if (mode & 0o040 && fileGid !== ownGid) return 'its group';
  return undefined;
}
