import { Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { CryptoModule } from './crypto.module';
import { KeyRing, KeyRingError } from './key-ring';
import { CIPHER_RANDOM_BYTES, KEY_RING, TokenCipher } from './token-cipher';

const spec = KeyRing.generate('mod');
const context = { connectionId: 'c1', field: 'access_token' };

describe('CryptoModule', () => {
  it('forRoot provides the ring and a working cipher from a spec string', async () => {
    const app = await Test.createTestingModule({ imports: [CryptoModule.forRoot(spec)] }).compile();
    const cipher = app.get(TokenCipher);
    expect(app.get<KeyRing>(KEY_RING).activeKid).toBe('mod');
    expect(cipher.open(cipher.seal('tok', context), context)).toBe('tok');
  });

  it('is global, so feature modules get TokenCipher without importing it', async () => {
    @Injectable()
    class Consumer {
      constructor(readonly cipher: TokenCipher) {}
    }
    @Module({ providers: [Consumer] })
    class FeatureModule {}

    const app = await Test.createTestingModule({ imports: [CryptoModule.forRoot(spec), FeatureModule] }).compile();
    expect(app.get(Consumer).cipher).toBeInstanceOf(TokenCipher);
  });

  it('lets a test pin the IV source', async () => {
    const app = await Test.createTestingModule({ imports: [CryptoModule.forRoot(spec)] })
      .overrideProvider(CIPHER_RANDOM_BYTES)
      .useValue((size: number) => Buffer.alloc(size, 7))
      .compile();
    const cipher = app.get(TokenCipher);
    expect(cipher.seal('tok', context)).toBe(cipher.seal('tok', context));
    expect(cipher.seal('tok', context).split('.')[2]).toBe(Buffer.alloc(12, 7).toString('base64url'));
  });

  it('fails at boot with KeyRingError for a bad spec', () => {
    expect(() => CryptoModule.forRoot('k1:short')).toThrow(KeyRingError);
  });
});
