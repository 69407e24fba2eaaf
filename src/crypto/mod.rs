//! Cryptography: password hashing, signing keys and their encryption at rest, JWT signing and
//! verification, random tokens and their hashes.

pub mod jwt;
pub mod keys;
pub mod password;
pub mod tokens;
pub mod verified;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key generation failed")]
    KeyGeneration,
    #[error("invalid key-encryption key: {0}")]
    InvalidKek(&'static str),
    #[error("a signing key could not be decrypted (wrong keys.encryption_key?)")]
    Decrypt,
    #[error("a stored signing key is malformed: {0}")]
    MalformedKey(String),
    #[error("signing failed")]
    Sign,
    #[error("password hashing failed: {0}")]
    Hash(String),
}
