//! Access tokens whose signature has already been checked, so that introspecting the same token
//! again costs a SHA-256 instead of an ECDSA or RSA verification, which costs more than the rest
//! of an introspection (criterion's `jwt_verify`, BENCHMARKS.md). A resource server asks about
//! the same token on every request it serves during the token's lifetime, so hits are common.
//!
//! Only what cannot change about a token is remembered: that our key signed exactly these
//! bytes, and the claims in them. What can change is checked on every hit as on a miss: the
//! clock against `exp`, `nbf` and `iat`, and whether the signing key is still published and
//! was still signing at `iat` (a key removed or revoked must stop verifying its tokens at
//! once). Revocation state is not here at all; introspection asks the database every time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use super::jwt::{VerificationKeys, VerifyError};
use super::tokens;

pub type Claims = Arc<Map<String, Value>>;

struct Entry {
    kid: String,
    exp: i64,
    claims: Claims,
}

/// A bounded map from a token's SHA-256 to what verifying it found.
pub struct VerifiedTokens {
    capacity: usize,
    entries: RwLock<HashMap<Vec<u8>, Entry>>,
}

impl VerifiedTokens {
    /// `capacity` 0 turns the cache off: every call verifies the signature.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: RwLock::default(),
        }
    }

    /// Same result as [`VerificationKeys::verify`] at `now` with these keys.
    pub fn verify(
        &self,
        keys: &VerificationKeys,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Result<Claims, VerifyError> {
        if self.capacity == 0 {
            return keys.verify(token, issuer, now).map(Arc::new);
        }
        let digest = tokens::hash(token);
        if let Some(found) = self.lookup(&digest, keys, issuer, now) {
            return found;
        }
        let (kid, claims) = keys.verify_keyed(token, issuer, now)?;
        let claims = Arc::new(claims);
        self.insert(digest, kid, claims.clone(), now);
        Ok(claims)
    }

    fn lookup(
        &self,
        digest: &[u8],
        keys: &VerificationKeys,
        issuer: &str,
        now: i64,
    ) -> Option<Result<Claims, VerifyError>> {
        let entries = match self.entries.read() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let entry = entries.get(digest)?;
        Some(
            keys.admit(&entry.kid, &entry.claims, issuer, now)
                .map(|()| entry.claims.clone()),
        )
    }

    fn insert(&self, digest: Vec<u8>, kid: String, claims: Claims, now: i64) {
        let Some(exp) = claims.get("exp").and_then(Value::as_i64) else {
            return;
        };
        let mut entries = match self.entries.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if entries.len() >= self.capacity {
            // Expired tokens first; if that frees less than a tenth, start over rather than
            // track recency on every hit (and rather than scan on every insert). Either way
            // memory stays bounded.
            entries.retain(|_, e| e.exp > now);
            if entries.len() >= self.capacity - self.capacity / 10 {
                entries.clear();
            }
        }
        entries.insert(digest, Entry { kid, exp, claims });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().map_or(0, |e| e.len())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::crypto::jwt::JwtSigner;
    use crate::crypto::keys::{KeyAlgorithm, generate};

    const ISSUER: &str = "https://auth.test";

    fn new_key() -> (JwtSigner, VerificationKeys) {
        let key = generate(KeyAlgorithm::ES256).expect("key");
        let signer =
            JwtSigner::from_pkcs8(&key.kid, KeyAlgorithm::ES256, &key.pkcs8).expect("signer");
        let keys = VerificationKeys::from_jwks([&key.public_jwk]);
        (signer, keys)
    }

    fn token(signer: &JwtSigner, iat: i64, ttl: i64, jti: &str) -> String {
        signer
            .sign(&json!({ "iss": ISSUER, "sub": "u", "iat": iat, "nbf": iat, "exp": iat + ttl, "jti": jti }))
            .expect("sign")
    }

    #[test]
    fn a_hit_still_checks_the_clock() {
        let (signer, keys) = new_key();
        let cache = VerifiedTokens::new(16);
        let t = token(&signer, 1_000, 60, "a");
        assert_eq!(
            cache.verify(&keys, &t, ISSUER, 1_010).expect("fresh")["jti"],
            "a"
        );
        assert_eq!(cache.len(), 1);
        assert_eq!(
            cache.verify(&keys, &t, ISSUER, 1_059).expect("hit")["jti"],
            "a"
        );
        assert!(
            cache.verify(&keys, &t, ISSUER, 1_060).is_err(),
            "expired on a hit"
        );
        assert!(
            cache.verify(&keys, &t, ISSUER, 999).is_err(),
            "not yet valid on a hit"
        );
        assert!(
            cache.verify(&keys, &t, "https://other", 1_010).is_err(),
            "issuer on a hit"
        );
    }

    #[test]
    fn a_hit_needs_the_key_still_published() {
        let (signer, keys) = new_key();
        let (_, other_keys) = new_key();
        let cache = VerifiedTokens::new(16);
        let t = token(&signer, 1_000, 60, "a");
        assert!(cache.verify(&keys, &t, ISSUER, 1_010).is_ok());
        assert_eq!(
            cache.verify(&other_keys, &t, ISSUER, 1_010).err(),
            Some(VerifyError::UnknownKey)
        );
    }

    #[test]
    fn only_verified_tokens_are_remembered() {
        let (signer, keys) = new_key();
        let cache = VerifiedTokens::new(16);
        let t = token(&signer, 1_000, 60, "a");
        // A signature character in the middle, where every bit counts.
        let at = t.len() - 20;
        let flipped = if &t[at..=at] == "A" { "B" } else { "A" };
        let forged = format!("{}{flipped}{}", &t[..at], &t[at + 1..]);
        assert!(cache.verify(&keys, &forged, ISSUER, 1_010).is_err());
        assert!(cache.verify(&keys, &forged, ISSUER, 1_010).is_err());
        assert!(cache.verify(&keys, &t, "https://other", 1_010).is_err());
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn memory_stays_bounded() {
        let (signer, keys) = new_key();
        let cache = VerifiedTokens::new(8);
        for i in 0..50 {
            let t = token(&signer, 1_000, 60, &format!("t{i}"));
            assert!(cache.verify(&keys, &t, ISSUER, 1_010).is_ok());
            assert!(cache.len() <= 8);
        }
        let off = VerifiedTokens::new(0);
        let t = token(&signer, 1_000, 60, "x");
        assert!(off.verify(&keys, &t, ISSUER, 1_010).is_ok());
        assert_eq!(off.len(), 0);
    }
}
