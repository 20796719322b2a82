export { CryptoModule } from './crypto.module';
export { KEY_BYTES, KEY_ID_PATTERN, KeyRing, KeyRingError, parseKeyRingSpec } from './key-ring';
export type { KeyRingParseResult } from './key-ring';
export {
  CIPHER_RANDOM_BYTES,
  KEY_RING,
  sealedKeyId,
  TokenCipher,
  TokenDecryptError,
  TokenDecryptReason,
} from './token-cipher';
export type { RandomBytes, SealContext, SealedValue, TokenField } from './token-cipher';
export { SealContexts } from './seal-contexts';
