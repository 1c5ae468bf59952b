//! Decryption of encrypted payload fields (`encryptedFeatures`, `encryptedSavedGroups`, ...):
//! AES-CBC with PKCS#7 padding, as `"<base64 iv>.<base64 ciphertext>"` with a base64 key.

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Why a payload could not be decrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecryptError {
    #[error("encrypted string has no '.' between iv and ciphertext")]
    MissingDelimiter,
    #[error("invalid base64 in {part}")]
    InvalidBase64 { part: &'static str },
    #[error("key must be 16, 24 or 32 bytes, got {length}")]
    InvalidKeyLength { length: usize },
    #[error("iv must be 16 bytes, got {length}")]
    InvalidIvLength { length: usize },
    #[error("ciphertext does not decrypt with this key (bad padding or length)")]
    BadCiphertext,
}

/// Like `atob`: standard alphabet, padding optional.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode(part: &'static str, text: &str) -> Result<Vec<u8>, DecryptError> {
    LENIENT_BASE64
        .decode(text.trim())
        .map_err(|_| DecryptError::InvalidBase64 { part })
}

/// Decrypts `"<iv>.<ciphertext>"` with `key` (all base64). Invalid UTF-8 in the plaintext is
/// replaced, as `TextDecoder` does; the plaintext is returned verbatim (not parsed as JSON).
pub fn decrypt(encrypted: &str, key: &str) -> Result<String, DecryptError> {
    let mut parts = encrypted.split('.');
    let iv_text = parts.next().unwrap_or_default();
    let ciphertext_text = parts.next().ok_or(DecryptError::MissingDelimiter)?;
    let key_bytes = decode("key", key)?;
    let iv = decode("iv", iv_text)?;
    let ciphertext = decode("ciphertext", ciphertext_text)?;
    if iv.len() != 16 {
        return Err(DecryptError::InvalidIvLength { length: iv.len() });
    }
    let plaintext = match key_bytes.len() {
        16 => cbc::Decryptor::<aes::Aes128>::new_from_slices(&key_bytes, &iv)
            .map_err(|_| DecryptError::InvalidKeyLength { length: 16 })?
            .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext),
        24 => cbc::Decryptor::<aes::Aes192>::new_from_slices(&key_bytes, &iv)
            .map_err(|_| DecryptError::InvalidKeyLength { length: 24 })?
            .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext),
        32 => cbc::Decryptor::<aes::Aes256>::new_from_slices(&key_bytes, &iv)
            .map_err(|_| DecryptError::InvalidKeyLength { length: 32 })?
            .decrypt_padded_vec_mut::<Pkcs7>(&ciphertext),
        length => return Err(DecryptError::InvalidKeyLength { length }),
    }
    .map_err(|_| DecryptError::BadCiphertext)?;
    Ok(String::from_utf8_lossy(&plaintext).into_owned())
}
