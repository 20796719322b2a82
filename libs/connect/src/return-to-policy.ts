/**
 * Decides whether a connect `returnTo` may be redirected to: its origin must match one of
 * CONNECT_RETURN_ORIGINS (`https://app.example.com`, `http://localhost:*`, `https://*.example.com`).
 * This is what keeps the broker from being an open redirect.
 */
export class ReturnToPolicy {
  private readonly patterns: Array<{ protocol: string; host: RegExp; port: string | null }>;

  constructor(origins: ReadonlyArray<string>) {
    this.patterns = origins.map((origin) => {
      const match = /^(https?):\/\/(\*\.)?([A-Za-z0-9.-]+)(?::(\d+|\*))?$/.exec(origin);
      if (!match) throw new Error(`not an origin pattern: ${origin}`);
      const [, protocol, wildcard, host, port] = match;
      const escaped = host.toLowerCase().replace(/[.]/g, '\\.');
      return {
        protocol: `${protocol}:`,
        host: new RegExp(wildcard ? `^[a-z0-9-]+(\\.[a-z0-9-]+)*\\.${escaped}$` : `^${escaped}$`),
        port: port ?? null,
      };
    });
  }

  allows(returnTo: string): boolean {
    let url: URL;
    try {
      url = new URL(returnTo);
    } catch {
      return false;
    }
    if (url.username || url.password) return false;
    return this.patterns.some((p) => {
      if (p.protocol !== url.protocol || !p.host.test(url.hostname)) return false;
      if (p.port === '*') return true;
      const effective = url.port || (url.protocol === 'https:' ? '443' : '80');
      return effective === (p.port ?? (p.protocol === 'https:' ? '443' : '80'));
    });
  }
}
