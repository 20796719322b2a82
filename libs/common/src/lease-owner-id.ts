import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';

/**
 * A fresh name for this process as a lease holder, written into the rows it claims (refresh
 * leases, webhook delivery claims): the host, the pid, and random bytes, so a restarted process
 * with a reused pid never passes for the one that died.
 */
export function newLeaseOwnerId(): string {
  return `${hostname().slice(0, 32)}:${process.pid}:${randomBytes(4).toString('hex')}`;
}
