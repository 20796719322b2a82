import { AppConfig, NamedSecret } from '@app/config';
import { Injectable } from '@nestjs/common';
import { hash, timingSafeEqual } from 'node:crypto';
import { Caller, CallerRole } from './caller';

interface StoredKey {
  caller: Readonly<Caller>;
  digest: Buffer;
}

/**
 * Checks bearer secrets against SERVICE_API_KEYS and ADMIN_API_KEYS. Secrets are kept only
 * as SHA-256 digests and compared with timingSafeEqual against every key (no early exit), so
 * neither timing nor length tells a caller how close a guess was.
 */
@Injectable()
export class ApiKeyVerifier {
  private readonly keys: StoredKey[];

  constructor(config: AppConfig) {
    const stored = (role: CallerRole) => (k: NamedSecret): StoredKey => ({ caller: Object.freeze({ name: k.name, role }), digest: digest(k.secret) });
    this.keys = [...config.serviceApiKeys.map(stored('service')), ...config.adminApiKeys.map(stored('admin'))];
  }

  /** The caller a secret belongs to (one shared, frozen object per key), or undefined. */
  identify(secret: string): Readonly<Caller> | undefined {
    const presented = digest(secret);
    let match: StoredKey | undefined;
    for (const key of this.keys) {
      if (timingSafeEqual(presented, key.digest) && !match) match = key;
    }
    return match?.caller;
  }
}

function digest(secret: string): Buffer {
  return hash('sha256', secret, 'buffer');
}
