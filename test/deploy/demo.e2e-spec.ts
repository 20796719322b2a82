/**
 * `npm run demo` as a newcomer runs it: the command in a terminal of its own (its own process
 * group, as a shell gives it), its output read for the links and commands it prints, an OAuth link
 * followed through the confirmation page and the sandbox's (clearly fake) consent with a cookie
 * jar, an API-key link through its form with the key printed beside it, the printed curls run in a
 * shell and answered with the tokens, then Ctrl-C (SIGINT to the whole group) and every port it
 * listened on found free again.
 */
import { PROVIDER_DEFINITIONS } from '@app/providers';
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { freePort } from '../support/test-broker';

const ROOT = join(__dirname, '../..');
const OAUTH_ACCOUNT = 'demo-user';
const API_KEY_ACCOUNT = 'demo-keys';

/** A browser's cookie jar, per origin (enough for these two local servers). */
class CookieJar {
  private readonly jars = new Map<string, Map<string, string>>();

  header(url: URL): Record<string, string> {
    const jar = this.jars.get(url.origin);
    return jar && jar.size > 0 ? { cookie: [...jar].map(([name, value]) => `${name}=${value}`).join('; ') } : {};
  }

  keep(url: URL, response: Response): void {
    for (const header of response.headers.getSetCookie()) {
      const [pair] = header.split(';');
      const name = pair.slice(0, pair.indexOf('='));
      const value = pair.slice(pair.indexOf('=') + 1);
      const jar = this.jars.get(url.origin) ?? new Map<string, string>();
      if (value === '' || /max-age=0/i.test(header)) jar.delete(name);
      else jar.set(name, value);
      this.jars.set(url.origin, jar);
    }
  }
}

/** Fetches as a browser would for a person clicking through: cookies kept, redirects looked at one by one. */
async function browse(jar: CookieJar, url: URL, init: { method?: 'GET' | 'POST'; form?: URLSearchParams } = {}): Promise<{ response: Response; body: string }> {
  const response = await fetch(url, {
    method: init.method ?? 'GET',
    redirect: 'manual',
    headers: { ...jar.header(url), ...(init.form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    body: init.form?.toString(),
  });
  jar.keep(url, response);
  return { response, body: await response.text() };
}

/** The first POST form of a page: where it goes and its fields (hidden inputs, plus the button pressed). */
function formOf(html: string, base: URL, button?: { name: string; value: string }): { action: URL; fields: URLSearchParams } {
  const form = /<form[^>]*method="post"[^>]*action="([^"]+)"[^>]*>([\s\S]*?)<\/form>/.exec(html);
  if (!form) throw new Error(`no form on the page: ${html.slice(0, 400)}`);
  const fields = new URLSearchParams();
  for (const input of form[2].matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) fields.set(input[1], unescapeHtml(input[2]));
  if (button) fields.set(button.name, button.value);
  return { action: new URL(unescapeHtml(form[1]), base), fields };
}

function unescapeHtml(value: string): string {
  return value
    .replace(/&#(\d+);/g, (_m, code: string) => String.fromCharCode(Number(code)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** Whether any process of the group is still alive (signal 0 only asks). */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm run demo', () => {
  let demo: ChildProcess | undefined;
  let dataDir: string | undefined;

  afterEach(() => {
    if (demo?.pid !== undefined && groupAlive(demo.pid)) process.kill(-demo.pid, 'SIGKILL');
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints OAuth and API-key links per provider and the curls; followed links and their curls give tokens; Ctrl-C leaves nothing listening', async () => {
    const brokerPort = await freePort();
    const sandboxPort = await freePort();
    mkdirSync(join(ROOT, '.data'), { recursive: true });
    dataDir = mkdtempSync(join(ROOT, '.data', 'test-demo-'));
    // The embedded PostgreSQL runs as its own user when the tests run as root: it must reach its folder.
    chmodSync(dataDir, 0o711);

    demo = spawn('npm', ['run', 'demo'], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', PORT: String(brokerPort), SANDBOX_PORT: String(sandboxPort), DATA_DIR: dataDir },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const child = demo;
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString('utf8')));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let gone = false;
    void exited.then(() => (gone = true));

    const deadline = Date.now() + 240_000;
    while (!output.includes('Ctrl-C stops everything.')) {
      if (gone || Date.now() > deadline) throw new Error(`the demo did not get ready:\n${output}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }

    // Two links per provider (OAuth; an API key with what to enter beside it), and a curl per token.
    const links = new Map<string, URL>();
    const keyLinks = new Map<string, { url: URL; apiKey: string; userEmail?: string }>();
    for (const definition of PROVIDER_DEFINITIONS) {
      const name = definition.displayName.replace(/\./g, '\\.');
      const oauth = new RegExp(`^\\s+${name}\\s+(http://\\S+)$`, 'm').exec(output);
      const apiKey = new RegExp(`^\\s+${name}\\s+(http://\\S+)\\s+key (\\S+?)(?:, email (\\S+))?$`, 'm').exec(output);
      expect({ provider: definition.id, oauth: oauth?.[1], apiKey: apiKey?.[1] }).toEqual({
        provider: definition.id,
        oauth: expect.stringContaining(`/connect/${definition.id}?session=`),
        apiKey: expect.stringContaining(`/connect/${definition.id}?session=`),
      });
      links.set(definition.id, new URL(oauth![1]));
      keyLinks.set(definition.id, { url: new URL(apiKey![1]), apiKey: apiKey![2], userEmail: apiKey![3] });
    }
    const keyLine = /^\s+(KEY=\$\(.*\))$/m.exec(output)?.[1];
    const curls = new Map([...output.matchAll(/^\s+(curl .*tokens\/([a-z-]+)\?provider=([a-z]+)')$/gm)].map((m) => [`${m[2]}/${m[3]}`, m[1]]));
    expect(keyLine).toBeDefined();
    expect([...curls.keys()].sort()).toEqual(PROVIDER_DEFINITIONS.flatMap((d) => [`${API_KEY_ACCOUNT}/${d.id}`, `${OAUTH_ACCOUNT}/${d.id}`]).sort());
    const runPrinted = (curl: string): Record<string, unknown> => {
      const run = spawnSync('bash', ['-c', `${keyLine}\n${curl}`], { cwd: ROOT, encoding: 'utf8' });
      expect(run.status).toBe(0);
      return JSON.parse(run.stdout) as Record<string, unknown>;
    };
    const databasePort = Number(/^\s+database\s+127\.0\.0\.1:(\d+)\s/m.exec(output)?.[1]);
    expect(databasePort).toBeGreaterThan(0);

    // Follow the Copy.ai link as a person would, cookies kept.
    const jar = new CookieJar();
    const link = links.get('copyai')!;
    const confirmation = await browse(jar, link);
    expect(confirmation.response.status).toBe(200);
    const confirm = formOf(confirmation.body, link);
    const toProvider = await browse(jar, confirm.action, { method: 'POST', form: confirm.fields });
    expect(toProvider.response.status).toBe(302);
    const authorizeUrl = new URL(toProvider.response.headers.get('location')!);
    expect(authorizeUrl.origin).toBe(`http://127.0.0.1:${sandboxPort}`);

    const consent = await browse(jar, authorizeUrl);
    expect(consent.response.status).toBe(200);
    // The consent page says plainly that it is not the real provider.
    expect(consent.body).toContain('This is not Copy.ai.');
    expect(consent.body).toMatch(/<title>Fake Copy\.ai/);
    const allow = formOf(consent.body, authorizeUrl, { name: 'decision', value: 'allow' });
    const back = await browse(jar, allow.action, { method: 'POST', form: allow.fields });
    expect(back.response.status).toBe(302);
    const callback = new URL(back.response.headers.get('location')!);
    expect(callback.origin).toBe(`http://127.0.0.1:${brokerPort}`);
    const done = await browse(jar, callback);
    expect(done.body).toContain('Connected to Copy.ai');

    // The printed commands, run in a shell from where the demo was started.
    const token = runPrinted(curls.get(`${OAUTH_ACCOUNT}/copyai`)!);
    expect(token).toMatchObject({ account: OAUTH_ACCOUNT, provider: 'copyai', authMode: 'oauth2', accessToken: expect.any(String) });
    expect((token.accessToken as string).length).toBeGreaterThan(10);
    // A provider not connected yet answers as the API says.
    expect(runPrinted(curls.get(`${OAUTH_ACCOUNT}/copper`)!)).toMatchObject({ error: 'connection_not_found' });

    // The Copper API-key link with the key and email printed beside it.
    const copperKey = keyLinks.get('copper')!;
    expect(copperKey.userEmail).toEqual(expect.stringContaining('@'));
    const keyPage = await browse(jar, copperKey.url);
    expect(keyPage.response.status).toBe(200);
    const keyForm = formOf(keyPage.body, copperKey.url);
    keyForm.fields.set('apiKey', copperKey.apiKey);
    keyForm.fields.set('userEmail', copperKey.userEmail!);
    const stored = await browse(jar, keyForm.action, { method: 'POST', form: keyForm.fields });
    expect(stored.body).toContain('Connected to Copper');
    expect(runPrinted(curls.get(`${API_KEY_ACCOUNT}/copper`)!)).toMatchObject({
      account: API_KEY_ACCOUNT,
      provider: 'copper',
      authMode: 'api_key',
      apply: { headers: { 'X-PW-AccessToken': copperKey.apiKey, 'X-PW-UserEmail': copperKey.userEmail } },
    });

    // Ctrl-C: the terminal signals the whole foreground group.
    process.kill(-child.pid!, 'SIGINT');
    const stopped = await Promise.race([exited.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 60_000).unref())]);
    expect({ stopped, output: stopped ? '' : output }).toEqual({ stopped: true, output: '' });
    expect(output).toContain('Stopped. Nothing is left running.');
    expect(groupAlive(child.pid!)).toBe(false);
    expect({ broker: await listening(brokerPort), sandbox: await listening(sandboxPort), database: await listening(databasePort) }).toEqual({
      broker: false,
      sandbox: false,
      database: false,
    });
  }, 360_000);
});
