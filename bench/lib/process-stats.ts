/**
 * Servers under test run in their own processes, so the load generator never shares their
 * event loop (on a 2-core machine that would halve what either can do).
 */
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const OUTPUT_KEPT_CHARS = 16_000;
const STOP_GRACE_MS = 10_000;

export interface ChildServer {
  readonly name: string;
  readonly pid: number;
  /** The last few KB of its stdout and stderr, for error messages. */
  output(): string;
  exited(): boolean;
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
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => {
      exited = true;
      resolve();
    }),
  );
  const pid = child.pid;
  return {
    name,
    pid,
    output: () => output,
    exited: () => exited,
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

/** Resident and peak resident memory of a process, in MB (Linux /proc). */
export function memoryOf(pid: number): { rssMb: number; peakRssMb: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMb: round(kb('VmRSS') / 1024, 1), peakRssMb: round(kb('VmHWM') / 1024, 1) };
  } catch {
    return undefined;
  }
}

let clockTicks: number | undefined;

/** CPU seconds (user + system) a process has used so far (Linux /proc). */
export function cpuSecondsOf(pid: number): number | undefined {
  try {
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / clockTicks;
  } catch {
    return undefined;
  }
}

/** CPU seconds used so far by a process and its direct children (a postmaster and its backends). */
export function treeCpuSecondsOf(pid: number): number | undefined {
  let total = cpuSecondsOf(pid);
  if (total === undefined) return undefined;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) total += cpuSecondsOf(Number(entry)) ?? 0;
    } catch {
      // The process ended meanwhile.
    }
  }
  return total;
}

/** CPU seconds the whole machine has spent busy so far (all cores, Linux /proc/stat). */
export function machineBusySeconds(): number | undefined {
  try {
    clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
    const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: everything but idle and iowait is busy.
    const busy = fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + (fields[7] ?? 0);
    return busy / clockTicks;
  } catch {
    return undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export function round(value: number, digits: number): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
