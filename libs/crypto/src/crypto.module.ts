import { DynamicModule, Module } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { KeyRing } from './key-ring';
import { CIPHER_RANDOM_BYTES, KEY_RING, TokenCipher } from './token-cipher';

/** A spec string is parsed here (throwing KeyRingError); a KeyRing is used as is. */
type KeyRingSource = KeyRing | string;

/**
 * Provides KEY_RING and TokenCipher app-wide. Global because the repository, the rotation
 * command and readiness checks all need the same ring, and there is exactly one per process.
 * The module does not read the environment itself: config owns validation and dev defaults.
 * The IV source is a provider too, so a test can pin it with
 * `.overrideProvider(CIPHER_RANDOM_BYTES).useValue(fn)`.
 */
@Module({})
export class CryptoModule {
  static forRoot(keyRing: KeyRingSource): DynamicModule {
    return {
      module: CryptoModule,
      global: true,
      providers: [{ provide: KEY_RING, useValue: toKeyRing(keyRing) }, { provide: CIPHER_RANDOM_BYTES, useValue: randomBytes }, TokenCipher],
      exports: [KEY_RING, TokenCipher],
    };
  }
}

function toKeyRing(source: KeyRingSource): KeyRing {
  return typeof source === 'string' ? KeyRing.parse(source) : source;
}
