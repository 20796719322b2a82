import { DynamicModule, FactoryProvider, Module, ModuleMetadata, Provider } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { KeyRing } from './key-ring';
import { CIPHER_RANDOM_BYTES, KEY_RING, TokenCipher } from './token-cipher';

/** A spec string is parsed here (throwing KeyRingError); a KeyRing is used as is. */
type KeyRingSource = KeyRing | string;

export interface CryptoModuleAsyncOptions extends Pick<FactoryProvider<KeyRingSource>, 'useFactory' | 'inject'> {
  imports?: ModuleMetadata['imports'];
}

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
    return CryptoModule.build([], { provide: KEY_RING, useValue: toKeyRing(keyRing) });
  }

  static forRootAsync(options: CryptoModuleAsyncOptions): DynamicModule {
    return CryptoModule.build(options.imports ?? [], {
      provide: KEY_RING,
      inject: options.inject ?? [],
      useFactory: async (...args: unknown[]) => toKeyRing(await options.useFactory(...args)),
    });
  }

  private static build(imports: NonNullable<ModuleMetadata['imports']>, keyRing: Provider<KeyRing>): DynamicModule {
    return {
      module: CryptoModule,
      global: true,
      imports,
      providers: [keyRing, { provide: CIPHER_RANDOM_BYTES, useValue: randomBytes }, TokenCipher],
      exports: [KEY_RING, TokenCipher],
    };
  }
}

function toKeyRing(source: KeyRingSource): KeyRing {
  return typeof source === 'string' ? KeyRing.parse(source) : source;
}
