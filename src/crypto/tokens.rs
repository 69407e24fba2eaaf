//! Opaque secrets Tessera hands out (refresh tokens, client secrets) and the hashes it keeps of
//! them. They carry 256 random bits, so a fast hash is as strong as a slow one would be.

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;

/// Prefix of refresh tokens, so secret scanners can spot leaked ones.
pub const REFRESH_PREFIX: &str = "tsr_";
/// Prefix of client secrets.
pub const CLIENT_SECRET_PREFIX: &str = "tsc_";

/// A fresh random value: `prefix` followed by 256 bits in base64url.
pub fn generate(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of the whole token string; this is what the store keeps.
pub fn hash(token: &str) -> Vec<u8> {
    digest(&SHA256, token.as_bytes()).as_ref().to_vec()
}

/// A random UUID-like identifier in base64url (for `jti` and key ids).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `n` random bytes as lowercase hex (trace and span ids).
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_prefixed_unique_and_long() {
        let a = generate(REFRESH_PREFIX);
        let b = generate(REFRESH_PREFIX);
        assert!(a.starts_with("tsr_"));
        assert_eq!(a.len(), 4 + 43);
        assert_ne!(a, b);
    }

    #[test]
    fn hash_is_sha256() {
        assert_eq!(
            hex::encode(hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
