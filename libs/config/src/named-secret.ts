/** A caller credential from `SERVICE_API_KEYS` / `ADMIN_API_KEYS`: `name:secret`. */
export interface NamedSecret {
  readonly name: string;
  readonly secret: string;
}

const NAME = /^[A-Za-z0-9_.-]{1,64}$/;
export const MIN_SECRET_LENGTH = 24;

/** Parses `name:secret,...`; problems never quote a secret. */
export function parseNamedSecrets(variable: string, spec: string): { secrets: NamedSecret[]; problems: string[] } {
  const problems: string[] = [];
  const secrets: NamedSecret[] = [];
  const entries = spec.split(',').map((e) => e.trim());
  entries.forEach((entry, index) => {
    const colon = entry.indexOf(':');
    const name = colon > 0 ? entry.slice(0, colon) : '';
    const secret = colon > 0 ? entry.slice(colon + 1) : '';
    const where = `${variable} entry ${index + 1}`;
    if (!NAME.test(name)) {
      problems.push(`${where}: expected name:secret with a name of letters, digits, . _ -`);
    } else if (secret.length < MIN_SECRET_LENGTH) {
      problems.push(`${where} (${name}): secret must be at least ${MIN_SECRET_LENGTH} characters`);
    } else if (secrets.some((s) => s.name === name)) {
      problems.push(`${where}: name ${name} appears twice`);
    } else {
      secrets.push({ name, secret });
    }
  });
  return { secrets, problems };
}
