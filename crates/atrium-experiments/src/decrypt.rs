//! Decryption of encrypted payload fields (`encryptedFeatures`, `encryptedSavedGroups`, ...):
//! AES-CBC with PKCS#7 padding, as `"<base64 iv>.<base64 ciphertext>"` with a base64 key.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
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

/// Encrypts `plaintext` with `key` (base64, 16/24/32 bytes) and the caller's random `iv`, as
/// `"<base64 iv>.<base64 ciphertext>"` (AES-CBC, PKCS#7) — the counterpart of [`decrypt`] and the
/// format GrowthBook serves in `encryptedFeatures`. The IV is a parameter so this stays pure.
pub fn encrypt(plaintext: &str, key: &str, iv: [u8; 16]) -> Result<String, DecryptError> {
    let key_bytes = decode("key", key)?;
    let bytes = plaintext.as_bytes();
    let ciphertext = match key_bytes.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&key_bytes, &iv)
            .map_err(|_| DecryptError::InvalidKeyLength { length: 16 })?
            .encrypt_padded_vec_mut::<Pkcs7>(bytes),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(&key_bytes, &iv)
            .map_err(|_| DecryptError::InvalidKeyLength { length: 24 })?
            .encrypt_padded_vec_mut::<Pkcs7>(bytes),
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(&key_bytes, &iv)
            .map_err(|_| DecryptError::InvalidKeyLength { length: 32 })?
            .encrypt_padded_vec_mut::<Pkcs7>(bytes),
        length => return Err(DecryptError::InvalidKeyLength { length }),
    };
    let standard = base64::engine::general_purpose::STANDARD;
    Ok(format!(
        "{}.{}",
        standard.encode(iv),
        standard.encode(ciphertext)
    ))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encrypt_round_trips_through_decrypt() {
        // The key of the GrowthBook decrypt conformance cases.
        let key = "Ns04T5n9+59rl2x3SlNHtQ==";
        let plaintext = r#"{"feature":{"defaultValue":"é ✓","rules":[]}}"#;
        let encrypted = encrypt(plaintext, key, [7u8; 16]).unwrap();
        assert!(
            encrypted.starts_with("BwcHBwcHBwcHBwcHBwcHBw==."),
            "{encrypted}"
        );
        assert_eq!(decrypt(&encrypted, key).unwrap(), plaintext);
        assert_eq!(
            encrypt("", key, [0u8; 16]).map(|e| decrypt(&e, key)),
            Ok(Ok(String::new()))
        );
        assert_eq!(
            encrypt("x", "AAAA", [0u8; 16]),
            Err(DecryptError::InvalidKeyLength { length: 3 })
        );
        assert_eq!(
            decrypt(
                &encrypt("x", key, [1u8; 16]).unwrap(),
                "AAAAAAAAAAAAAAAAAAAAAA=="
            ),
            Err(DecryptError::BadCiphertext)
        );
    }
}
