import { isIPv4 } from 'node:net';

/** Small readers and checks of environment values, shared by the configuration's parts. */

export const HTTPS_IN_PRODUCTION = 'must be https in production (plain http only for a loopback host: localhost, 127.0.0.0/8, ::1)';

/** An `http:` URL whose host is not this machine: tokens, codes and secrets would cross a network in clear. */
export function isPlainHttpBeyondLoopback(value: string): boolean {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return false;
  }
  if (url.protocol !== 'http:') return false;
  // WHATWG URL keeps IPv6 hosts bracketed and normalises IPv4 shorthand (127.1 → 127.0.0.1).
  const host = url.hostname.toLowerCase();
  const loopback = host === 'localhost' || host === '[::1]' || (isIPv4(host) && host.startsWith('127.'));
  return !loopback;
}

export function readInteger(
  read: (name: string) => string | undefined,
  name: string,
  fallback: number,
  [min, max]: [number, number],
  problems: string[],
): number {
  const raw = read(name);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    problems.push(`${name}: must be a whole number from ${min} to ${max} (got "${raw}")`);
    return fallback;
  }
  return value;
}
