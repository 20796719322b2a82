/**
 * Servers in their own processes, started with their output kept and polled until ready: the
 * broker replica a fault suite kills outright, and the benchmark's broker and sandbox (so the load
 * generator never shares their event loop). Test support owns it and the benchmark imports it
 * from here, never the other way round.
 */
import { ChildProcess, spawn } from 'node:child_process';

const OUTPUT_KEPT_CHARS = 16_000;
const STOP_GRACE_MS = 10_000;

export interface ChildServer {
  readonly name: string;
  readonly pid: number;
  /** The last few KB of its stdout and stderr, for error messages. */
  output(): string;
  exited(): boolean;
  /** The exit code once it exited on its own; null while it runs or when a signal ended it. */
  exitCode(): number | null;
  /** Sends `signal` and returns at once (a shutdown under test); `exit` resolves when it is gone. */
  signal(signal: NodeJS.Signals): void;
  /** Resolves when the process has exited. */
  readonly exit: Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs` (default 10 s). Safe to call more than once. */
  stop(graceMs?: number): Promise<void>;
  /** SIGKILL at once: no shutdown hooks run. Resolves once the process is gone. */
  kill(): Promise<void>;
}

export function spawnChild(name: string, command: string, args: string[], options: { env: NodeJS.ProcessEnv; cwd: string }): ChildServer {
  const child: ChildProcess = spawn(command, args, { cwd: options.cwd, env: options.env, stdio: ['ignore', 'pipe', 'pipe'] });
  if (child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
  let output = '';
  const collect = (chunk: Buffer): void => {
    output = (output + chunk.toString('utf8')).slice(-OUTPUT_KEPT_CHARS);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  let exited = false;
  let exitCode: number | null = null;
  const exit = new Promise<void>((resolve) =>
    child.once('exit', (code) => {
      exited = true;
      exitCode = code;
      resolve();
    }),
  );
  const pid = child.pid;
  return {
    name,
    pid,
    output: () => output,
    exited: () => exited,
    exitCode: () => exitCode,
    signal: (signal) => {
      if (!exited) child.kill(signal);
    },
    exit,
    stop: async (graceMs = STOP_GRACE_MS) => {
      if (exited) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exit;
      clearTimeout(timer);
    },
    kill: async () => {
      if (!exited) child.kill('SIGKILL');
      await exit;
    },
  };
}

/** Polls `url` until it answers 200; fails early if the child dies. */
export async function waitForOk(url: string, child: ChildServer, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  for (;;) {
    if (child.exited()) throw new Error(`${child.name} exited before ${url} answered:\n${child.output().trim()}`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      if (response.status === 200) return;
      last = `HTTP ${response.status}: ${(await response.text()).slice(0, 300)}`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${child.name} not ready at ${url} within ${timeoutMs / 1000}s (${last}):\n${child.output().trim()}`);
    await sleep(100);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
