import { ReturnToPolicy } from './return-to-policy';

/**
 * The connect callback redirects to `new URL(returnTo)` with the outcome added (connect.controller.ts),
 * so what matters is where a browser lands: `landsOn` parses a value the same way.
 */
function landsOn(value: string): string {
  return new URL(value).origin;
}

describe('ReturnToPolicy', () => {
  const policy = new ReturnToPolicy([
    'https://app.example.com',
    'https://*.example.net',
    'http://localhost:*',
    'https://admin.example.org:8443',
    'https://api.example.com:443',
    'https://xn--bcher-kva.example',
  ]);
  const listedOrigins = [
    'https://app.example.com',
    'https://admin.example.org:8443',
    'https://api.example.com',
    'https://xn--bcher-kva.example',
  ];
  /** An origin the policy above may send a browser to: a listed one, any under example.net, any localhost port. */
  const isListed = (origin: string): boolean =>
    listedOrigins.includes(origin) || /^https:\/\/[a-z0-9-]+(\.[a-z0-9-]+)*\.example\.net$/.test(origin) || /^http:\/\/localhost(:\d+)?$/.test(origin);

  describe('origins on the list', () => {
    it.each([
      ['the exact origin, with a path, query and fragment', 'https://app.example.com/integrations?tab=crm#done'],
      ['the exact origin without a path', 'https://app.example.com'],
      ['an uppercase scheme and host (URLs are case-insensitive there)', 'HTTPS://APP.EXAMPLE.COM/x'],
      ['a subdomain under a wildcard', 'https://crm.example.net/back'],
      ['a deeper subdomain under a wildcard', 'https://eu.crm.example.net/back'],
      ['localhost on any port under a port wildcard', 'http://localhost:5173/cb'],
      ['localhost on the highest port', 'http://localhost:65535/'],
      ['localhost without a port (80) under a port wildcard', 'http://localhost/cb'],
      ['an uppercase LOCALHOST', 'http://LOCALHOST:8080/'],
      ['a listed non-default port', 'https://admin.example.org:8443/'],
      ['an IDN host written in Unicode when the list holds its punycode', 'https://bücher.example/'],
    ])('allows %s', (_name, value) => {
      expect(policy.allows(value)).toBe(true);
      expect(isListed(landsOn(value))).toBe(true);
    });

    it('does not match the bare domain under a wildcard: *.example.net means a subdomain', () => {
      expect(policy.allows('https://example.net/')).toBe(false);
    });
  });

  describe('ports', () => {
    it('treats an explicit default port as no port, on either side', () => {
      expect(policy.allows('https://app.example.com:443/')).toBe(true);
      expect(policy.allows('https://app.example.com:0443/')).toBe(true);
      expect(policy.allows('http://localhost:80/')).toBe(true);
      // The list says https://api.example.com:443; a URL without a port means the same origin.
      expect(policy.allows('https://api.example.com/')).toBe(true);
      expect(policy.allows('https://api.example.com:443/')).toBe(true);
    });

    it('refuses a port the list does not name', () => {
      expect(policy.allows('https://app.example.com:8443/')).toBe(false);
      expect(policy.allows('https://app.example.com:80/')).toBe(false);
      expect(policy.allows('https://api.example.com:8443/')).toBe(false);
      // Listed with :8443 only: the default port is another origin.
      expect(policy.allows('https://admin.example.org/')).toBe(false);
      expect(policy.allows('https://admin.example.org:443/')).toBe(false);
    });

    it('lets the port wildcard stand for ports only, not for another scheme or host', () => {
      expect(policy.allows('https://localhost:3000/')).toBe(false);
      expect(policy.allows('http://localhost.evil.com:3000/')).toBe(false);
      expect(policy.allows('http://127.0.0.1:3000/')).toBe(false);
      expect(policy.allows('http://[::1]:3000/')).toBe(false);
      expect(policy.allows('http://localhost./')).toBe(false);
    });

    it('refuses ports that are not ports', () => {
      for (const value of ['http://localhost:65536/', 'https://app.example.com:-1/', 'https://app.example.com:99999999999999999999/', 'https://app.example.com:44a/']) {
        expect(policy.allows(value)).toBe(false);
      }
    });
  });

  describe('userinfo', () => {
    it.each([
      ['a user name before an allowed host', 'https://evil@app.example.com/'],
      ['user and password before an allowed host', 'https://user:pass@app.example.com/'],
      ['an allowed host as the user name of another', 'https://app.example.com@evil.com/'],
      ['an allowed host and port as the userinfo of another', 'https://app.example.com:443@evil.com/'],
      ['localhost with a port as the userinfo of another', 'http://localhost:3000@evil.com/'],
      ['a subdomain as the userinfo of another', 'https://crm.example.net@evil.com/'],
    ])('refuses %s', (_name, value) => {
      expect(policy.allows(value)).toBe(false);
    });

    it('allows an empty userinfo, which the URL drops, because the browser lands on the listed host', () => {
      expect(policy.allows('https://:@app.example.com/')).toBe(true);
      expect(new URL('https://:@app.example.com/').href).toBe('https://app.example.com/');
    });
  });

  describe('look-alike and internationalised hosts', () => {
    it('refuses an exact host spelled with a Cyrillic а (it is another host, xn--pp-6kc.example.com)', () => {
      expect(policy.allows('https://аpp.example.com/')).toBe(false);
      expect(policy.allows('https://xn--pp-6kc.example.com/')).toBe(false);
    });

    it('refuses a look-alike of the wildcard domain itself', () => {
      // exаmple.net with a Cyrillic а is xn--exmple-4nf.net: not under example.net.
      expect(policy.allows('https://app.exаmple.net/')).toBe(false);
      expect(policy.allows('https://app.xn--exmple-4nf.net/')).toBe(false);
    });

    it('allows a punycode label under a wildcard domain: it is still a host the domain owner controls', () => {
      expect(policy.allows('https://аpp.example.net/')).toBe(true);
      expect(landsOn('https://аpp.example.net/')).toBe('https://xn--pp-6kc.example.net');
    });

    it('allows Unicode that URL parsing folds into the listed host (fullwidth, soft hyphen, zero-width space)', () => {
      for (const value of ['https://ａｐｐ.example.com/', 'https://app．example．com/', 'https://app.example.com\u00ad/', 'https://app\u200b.example.com/']) {
        expect(policy.allows(value)).toBe(true);
        expect(landsOn(value)).toBe('https://app.example.com');
      }
    });

    it('refuses Unicode dots that fold into a longer, foreign host', () => {
      expect(policy.allows('https://app.example.com\u3002evil.com/')).toBe(false);
      expect(policy.allows('https://app.example.com\uff0eevil.com/')).toBe(false);
    });

    it('refuses percent-encoded dots that make a foreign host, and allows those that spell the listed one', () => {
      expect(policy.allows('https://app.example.com%2eevil.com/')).toBe(false);
      expect(policy.allows('https://app%2eexample.com/')).toBe(true);
      expect(landsOn('https://app%2eexample.com/')).toBe('https://app.example.com');
    });
  });

  describe('backslashes', () => {
    it.each([
      ['https:\\\\evil.com', 'https:\\\\evil.com'],
      ['https:/\\evil.com', 'https:/\\evil.com'],
      ['/\\evil.com', '/\\evil.com'],
      ['\\\\evil.com', '\\\\evil.com'],
      ['https:\\\\app.example.com.evil.com', 'https:\\\\app.example.com.evil.com'],
    ])('refuses %s', (_name, value) => {
      expect(policy.allows(value)).toBe(false);
    });

    it('allows a backslash after the host only because it ends the host: the browser lands on the listed origin', () => {
      for (const value of ['https://app.example.com\\@evil.com', 'http://localhost:3000\\@evil.com']) {
        expect(policy.allows(value)).toBe(true);
        expect(isListed(landsOn(value))).toBe(true);
        expect(new URL(value).pathname).toBe('/@evil.com');
      }
    });
  });

  describe('schemes', () => {
    it.each([
      ['javascript:', 'javascript:alert(document.domain)//https://app.example.com'],
      ['JavaScript: in mixed case', 'JavaScript:alert(1)'],
      ['data:', 'data:text/html,<script>alert(1)</script>'],
      ['vbscript:', 'vbscript:msgbox(1)'],
      ['file:', 'file:///etc/passwd'],
      ['blob: of a listed origin', 'blob:https://app.example.com/0b6f'],
      ['ftp: on a listed host', 'ftp://app.example.com/'],
      ['ws: on localhost', 'ws://localhost:3000/'],
      ['http: where the list says https:', 'http://app.example.com/'],
      ['a protocol-relative URL', '//evil.com/'],
      ['a protocol-relative URL to a listed host (no base to resolve against)', '//app.example.com/'],
      ['a relative path', '/integrations'],
      ['a bare host', 'app.example.com'],
      ['an empty string', ''],
    ])('refuses %s', (_name, value) => {
      expect(policy.allows(value)).toBe(false);
    });

    it('allows the scheme-relative-looking spellings URL parsing repairs into the listed origin', () => {
      for (const value of ['https:app.example.com/x', 'https:/app.example.com/x', 'https:///app.example.com/x']) {
        expect(policy.allows(value)).toBe(true);
        expect(landsOn(value)).toBe('https://app.example.com');
      }
    });
  });

  describe('trailing dots and suffix tricks', () => {
    it.each([
      ['a trailing dot on an exact host', 'https://app.example.com./'],
      ['a trailing dot on a wildcard host', 'https://crm.example.net./'],
      ['the listed host as a prefix of another', 'https://app.example.com.evil.com/'],
      ['a subdomain of the listed exact host', 'https://x.app.example.com/'],
      ['a domain ending in the wildcard suffix without a dot', 'https://evilexample.net/'],
      ['the wildcard domain as a prefix of another', 'https://example.net.evil.com/'],
      ['a literal * in the host', 'https://*.example.net/'],
      ['the listed host in the path of another', 'https://evil.com/app.example.com'],
      ['the listed host in the query of another', 'https://evil.com/?next=https://app.example.com'],
      ['the listed host in the fragment of another', 'https://evil.com#app.example.com'],
    ])('refuses %s', (_name, value) => {
      expect(policy.allows(value)).toBe(false);
    });

    it('allows @evil.com in the query or fragment of a listed origin: it is not the host', () => {
      for (const value of ['https://app.example.com?@evil.com', 'https://app.example.com#@evil.com']) {
        expect(policy.allows(value)).toBe(true);
        expect(landsOn(value)).toBe('https://app.example.com');
      }
    });
  });

  describe('whitespace and control characters', () => {
    it('allows leading and trailing whitespace and controls, which URL parsing strips', () => {
      for (const value of [' https://app.example.com/ ', '\u0001https://app.example.com/', 'https://app.example.com/\n']) {
        expect(policy.allows(value)).toBe(true);
        expect(landsOn(value)).toBe('https://app.example.com');
      }
    });

    it.each([
      ['a tab inside the scheme that makes javascript:', 'java\tscript:alert(1)'],
      ['a newline inside the scheme that makes https: to another host', 'ht\ntps://evil.com/'],
      ['a tab that joins the listed host to another', 'https://app.example.com\t.evil.com/'],
      ['CR LF that join the listed host to another', 'https://app.example.com\r\n.evil.com/'],
      ['a newline that turns the listed host into userinfo', 'https://app.example.com\n@evil.com/'],
      ['a space in the host', 'https://app.example.com /x'],
      ['a NUL in the host', 'https://app.example.com\u0000.evil.com/'],
      ['a percent-encoded NUL in the host', 'https://app.example.com%00/'],
    ])('refuses %s', (_name, value) => {
      expect(policy.allows(value)).toBe(false);
    });
  });

  describe('very long values', () => {
    it('judges a 100 000-character path on a listed origin like a short one', () => {
      expect(policy.allows(`https://app.example.com/${'a'.repeat(100_000)}`)).toBe(true);
      expect(policy.allows(`https://evil.com/${'a'.repeat(100_000)}`)).toBe(false);
    });

    it('answers promptly for hosts built to make the wildcard pattern backtrack', () => {
      const started = Date.now();
      expect(policy.allows(`https://${'a.'.repeat(100_000)}evil.com/`)).toBe(false);
      expect(policy.allows(`https://${'a-'.repeat(100_000)}!.example.net/`)).toBe(false);
      expect(policy.allows(`https://${'a'.repeat(100_000)}.example.com/`)).toBe(false);
      // Catastrophic backtracking would take minutes; a linear scan takes milliseconds.
      expect(Date.now() - started).toBeLessThan(5_000);
    });

    it('keeps a long subdomain under a wildcard on that domain', () => {
      const value = `https://${'a.'.repeat(1_000)}example.net/`;
      expect(policy.allows(value)).toBe(true);
      expect(landsOn(value).endsWith('.example.net')).toBe(true);
    });
  });

  describe('the list itself', () => {
    it.each([
      ['a path', 'https://app.example.com/'],
      ['another scheme', 'ftp://files.example.com'],
      ['a bare *', '*'],
      ['a host that is only a wildcard', 'https://*'],
      ['two wildcards', 'https://*.*.example.com'],
      ['no scheme', 'app.example.com'],
      ['userinfo', 'https://user@app.example.com'],
      ['a Unicode host (write it in punycode)', 'https://аpp.example.com'],
      ['an empty port', 'https://app.example.com:'],
    ])('refuses a pattern with %s at construction', (_name, origin) => {
      expect(() => new ReturnToPolicy([origin])).toThrow(`not an origin pattern: ${origin}`);
    });

    it('matches a pattern host written in uppercase', () => {
      expect(new ReturnToPolicy(['https://APP.Example.com']).allows('https://app.example.com/')).toBe(true);
    });

    it('allows nothing when the list is empty', () => {
      const none = new ReturnToPolicy([]);
      expect(none.allows('https://app.example.com/')).toBe(false);
      expect(none.allows('http://localhost:3000/')).toBe(false);
    });

    it('with the default outside production (http://localhost:*), allows only localhost over http', () => {
      const defaults = new ReturnToPolicy(['http://localhost:*']);
      expect(defaults.allows('http://localhost:5173/integrations')).toBe(true);
      expect(defaults.allows('https://localhost:5173/')).toBe(false);
      expect(defaults.allows('http://localhost@evil.com/')).toBe(false);
      expect(defaults.allows('http://evil.com/?localhost')).toBe(false);
    });
  });
});
