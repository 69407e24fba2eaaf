//! JWT access tokens (RFC 9068): signing with keys parsed once, and verification against the
//! published keys with `jsonwebtoken`.

use std::collections::HashMap;
use std::fmt;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RSA_PKCS1_SHA256, RsaKeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};

use super::CryptoError;
use super::keys::KeyAlgorithm;

/// Media type of RFC 9068 access tokens, as carried in the `typ` header.
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// `typ` of OpenID Connect ID tokens, so neither kind of token passes for the other.
pub const ID_TOKEN_TYP: &str = "JWT";

enum KeyPairKind {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// One signing key, parsed once, with its JOSE header already encoded.
pub struct JwtSigner {
    kid: String,
    pair: KeyPairKind,
    algorithm: KeyAlgorithm,
    header_b64: String,
    id_header_b64: String,
    rng: SystemRandom,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    pub fn from_pkcs8(
        kid: &str,
        algorithm: KeyAlgorithm,
        pkcs8: &[u8],
    ) -> Result<Self, CryptoError> {
        let bad = |e: aws_lc_rs::error::KeyRejected| CryptoError::MalformedKey(e.to_string());
        let pair = match algorithm {
            KeyAlgorithm::ES256 => KeyPairKind::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(bad)?,
            ),
            KeyAlgorithm::EdDSA => {
                KeyPairKind::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(bad)?)
            }
            KeyAlgorithm::RS256 => KeyPairKind::Rs256(RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?),
        };
        let header = |typ: &str| {
            URL_SAFE_NO_PAD
                .encode(json!({ "alg": algorithm.as_str(), "kid": kid, "typ": typ }).to_string())
        };
        Ok(Self {
            kid: kid.to_owned(),
            pair,
            algorithm,
            header_b64: header(ACCESS_TOKEN_TYP),
            id_header_b64: header(ID_TOKEN_TYP),
            rng: SystemRandom::new(),
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Serializes and signs `claims` as a compact JWS access token (`typ` at+jwt).
    pub fn sign(&self, claims: &Value) -> Result<String, CryptoError> {
        self.sign_with_header(&self.header_b64, claims)
    }

    /// Serializes and signs `claims` as an OpenID Connect ID token (`typ` JWT).
    pub fn sign_id_token(&self, claims: &Value) -> Result<String, CryptoError> {
        self.sign_with_header(&self.id_header_b64, claims)
    }

    /// The left half of the hash the signing algorithm uses, base64url: an ID token's
    /// `at_hash` of `token` (OIDC Core §3.1.3.6; SHA-512 for Ed25519).
    pub fn left_half_hash(&self, token: &str) -> String {
        use aws_lc_rs::digest::{SHA256, SHA512, digest};
        let hashed = match self.algorithm {
            KeyAlgorithm::EdDSA => digest(&SHA512, token.as_bytes()),
            KeyAlgorithm::ES256 | KeyAlgorithm::RS256 => digest(&SHA256, token.as_bytes()),
        };
        let bytes = hashed.as_ref();
        URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
    }

    fn sign_with_header(&self, header_b64: &str, claims: &Value) -> Result<String, CryptoError> {
        let payload = serde_json::to_vec(claims).map_err(|_| CryptoError::Sign)?;
        let mut token = String::with_capacity(header_b64.len() + payload.len() * 4 / 3 + 120);
        token.push_str(header_b64);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = match &self.pair {
            KeyPairKind::Es256(pair) => pair
                .sign(&self.rng, token.as_bytes())
                .map_err(|_| CryptoError::Sign)?
                .as_ref()
                .to_vec(),
            KeyPairKind::EdDsa(pair) => pair.sign(token.as_bytes()).as_ref().to_vec(),
            KeyPairKind::Rs256(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &self.rng, token.as_bytes(), &mut sig)
                    .map_err(|_| CryptoError::Sign)?;
                sig
            }
        };
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// Why a JWT was not accepted. Callers outside only ever see "inactive".
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown key")]
    UnknownKey,
    #[error("wrong token type")]
    WrongType,
    #[error("invalid: {0}")]
    Invalid(String),
}

/// Seconds within which every instance hears of a key change (NOTIFY, or a poll twice a second).
pub const KEY_PROPAGATION: i64 = 2;

/// The public keys a token may be signed by, by kid.
#[derive(Default)]
pub struct VerificationKeys {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    /// When a key stopped (or will stop) signing: a token it claims to have signed later is
    /// forged with a leaked key, or minted by an instance that missed the change.
    signs_until: HashMap<String, i64>,
    /// Seconds by which another instance's clock may run ahead of ours (`nbf`, `iat`, and
    /// `signs_until`); `exp` has none.
    leeway: i64,
}

impl VerificationKeys {
    /// Builds the set from public JWKs; keys that cannot be used are skipped.
    pub fn from_jwks<'a>(jwks: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut keys = HashMap::new();
        for jwk in jwks {
            let Ok(parsed) = serde_json::from_value::<jsonwebtoken::jwk::Jwk>(jwk.clone()) else {
                continue;
            };
            let (Some(kid), Some(alg)) = (
                parsed.common.key_id.clone(),
                jwk.get("alg").and_then(Value::as_str),
            ) else {
                continue;
            };
            let (Ok(key), Ok(alg)) = (DecodingKey::from_jwk(&parsed), alg.parse::<Algorithm>())
            else {
                continue;
            };
            keys.insert(kid, (key, alg));
        }
        Self {
            keys,
            ..Self::default()
        }
    }

    /// The same keys, refusing tokens that claim to be issued after their key stopped
    /// signing, and allowing `leeway` seconds of clock skew between instances.
    pub fn with_limits(mut self, signs_until: HashMap<String, i64>, leeway: i64) -> Self {
        self.signs_until = signs_until;
        self.leeway = leeway.max(0);
        self
    }

    /// Verifies signature, `typ`, issuer, `exp` and `nbf`; returns the claims.
    pub fn verify(
        &self,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Result<Map<String, Value>, VerifyError> {
        self.verify_keyed(token, issuer, now)
            .map(|(_, claims)| claims)
    }

    /// Whether claims already verified against key `kid` (its signature checked once, perhaps
    /// under an earlier key set) still hold at `now` with this key set: the key still
    /// published, the issuer, and the times.
    pub fn admit(
        &self,
        kid: &str,
        claims: &Map<String, Value>,
        issuer: &str,
        now: i64,
    ) -> Result<(), VerifyError> {
        if !self.keys.contains_key(kid) {
            return Err(VerifyError::UnknownKey);
        }
        if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
            return Err(VerifyError::Invalid("wrong issuer".into()));
        }
        let time = |name: &str| claims.get(name).and_then(Value::as_i64);
        let exp = time("exp").ok_or(VerifyError::Malformed)?;
        let iat = time("iat").ok_or(VerifyError::Malformed)?;
        if exp <= now {
            return Err(VerifyError::Invalid("expired".into()));
        }
        let ahead = now.saturating_add(self.leeway);
        if time("nbf").is_some_and(|nbf| nbf > ahead) {
            return Err(VerifyError::Invalid("not yet valid".into()));
        }
        if iat > ahead {
            return Err(VerifyError::Invalid("issued in the future".into()));
        }
        // Another instance may sign with a key for up to KEY_PROPAGATION after it stopped
        // signing elsewhere, whatever the configured leeway.
        if let Some(until) = self.signs_until.get(kid)
            && iat > until.saturating_add(self.leeway.max(KEY_PROPAGATION))
        {
            return Err(VerifyError::Invalid(
                "issued after its key stopped signing".into(),
            ));
        }
        Ok(())
    }

    /// The key a token names (`kid`), if its header's algorithm is that key's and its `typ`
    /// is one `typ_ok` accepts.
    fn key_for(
        &self,
        token: &str,
        typ_ok: impl Fn(&str) -> bool,
    ) -> Result<(String, &DecodingKey, Algorithm), VerifyError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
        let kid = header.kid.ok_or(VerifyError::UnknownKey)?;
        let (key, alg) = self.keys.get(&kid).ok_or(VerifyError::UnknownKey)?;
        // The algorithm comes from our key, never from the token: a header claiming `none`
        // or HS256 fails here.
        if header.alg != *alg {
            return Err(VerifyError::Invalid(
                "algorithm does not match the key".into(),
            ));
        }
        if !header.typ.as_deref().is_some_and(typ_ok) {
            return Err(VerifyError::WrongType);
        }
        Ok((kid, key, *alg))
    }

    /// An ID token this server signed, as RP-initiated logout's `id_token_hint` carries it:
    /// signature, `typ` and issuer checked, expiry not (OIDC RP-Initiated Logout §2 allows an
    /// expired one). Returns the claims.
    pub fn verify_id_token_hint(
        &self,
        token: &str,
        issuer: &str,
    ) -> Result<Map<String, Value>, VerifyError> {
        let (_, key, alg) = self.key_for(token, |typ| typ == ID_TOKEN_TYP)?;
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["iss", "sub", "aud"]);
        validation.set_issuer(&[issuer]);
        jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map(|data| data.claims)
            .map_err(|e| VerifyError::Invalid(e.to_string()))
    }

    /// [`Self::verify`], also returning the id of the key that signed.
    pub fn verify_keyed(
        &self,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Result<(String, Map<String, Value>), VerifyError> {
        let (kid, key, alg) = self.key_for(token, |t| {
            t.eq_ignore_ascii_case(ACCESS_TOKEN_TYP) || t.eq_ignore_ascii_case("application/at+jwt")
        })?;
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        // Expiry is checked below against the injected clock.
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.set_issuer(&[issuer]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, key, &validation)
            .map_err(|e| VerifyError::Invalid(e.to_string()))?;
        let claims = data.claims;
        self.admit(&kid, &claims, issuer, now)?;
        Ok((kid, claims))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::generate;

    fn claims(now: i64) -> Value {
        json!({ "iss": "https://auth.test", "sub": "u", "exp": now + 60, "iat": now, "nbf": now, "jti": "j" })
    }

    #[test]
    fn signs_and_verifies_with_every_algorithm() {
        for alg in [
            KeyAlgorithm::ES256,
            KeyAlgorithm::EdDSA,
            KeyAlgorithm::RS256,
        ] {
            let key = generate(alg).expect("key");
            let signer = JwtSigner::from_pkcs8(&key.kid, alg, &key.pkcs8).expect("signer");
            let token = signer.sign(&claims(1_000)).expect("sign");
            let keys = VerificationKeys::from_jwks([&key.public_jwk]);
            let got = keys
                .verify(&token, "https://auth.test", 1_010)
                .expect("verifies");
            assert_eq!(got["sub"], "u");
            assert!(keys.verify(&token, "https://other.test", 1_010).is_err());
            assert!(
                keys.verify(&token, "https://auth.test", 1_060).is_err(),
                "expired"
            );
            assert!(
                keys.verify(&token, "https://auth.test", 990).is_err(),
                "nbf"
            );
        }
    }

    #[test]
    fn rejects_alg_none_and_unknown_kid() {
        let key = generate(KeyAlgorithm::ES256).expect("key");
        let keys = VerificationKeys::from_jwks([&key.public_jwk]);
        let header = URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"none","typ":"at+jwt","kid":"{}"}}"#,
            key.kid
        ));
        let body = URL_SAFE_NO_PAD.encode(claims(1_000).to_string());
        assert!(
            keys.verify(&format!("{header}.{body}."), "https://auth.test", 1_010)
                .is_err()
        );
        let other = generate(KeyAlgorithm::ES256).expect("key");
        let signer =
            JwtSigner::from_pkcs8(&other.kid, KeyAlgorithm::ES256, &other.pkcs8).expect("signer");
        let token = signer.sign(&claims(1_000)).expect("sign");
        assert_eq!(
            keys.verify(&token, "https://auth.test", 1_010),
            Err(VerifyError::UnknownKey)
        );
    }

    #[test]
    fn leeway_covers_nbf_and_iat_but_not_exp_and_key_retirement() {
        let key = generate(KeyAlgorithm::ES256).expect("key");
        let signer = JwtSigner::from_pkcs8(&key.kid, KeyAlgorithm::ES256, &key.pkcs8).expect("k");
        let limits = HashMap::from([(key.kid.clone(), 2_000)]);
        let keys = VerificationKeys::from_jwks([&key.public_jwk]).with_limits(limits, 5);
        let at = |iat: i64| signer.sign(&claims(iat)).expect("sign");
        let verify = |token: &str, now: i64| keys.verify(token, "https://auth.test", now);
        assert!(verify(&at(1_005), 1_000).is_ok(), "5 s ahead");
        assert!(verify(&at(1_006), 1_000).is_err(), "6 s ahead");
        assert!(verify(&at(1_000), 1_060).is_err(), "exp is strict");
        assert!(
            verify(&at(2_005), 2_010).is_ok(),
            "signed within leeway of retirement"
        );
        assert_eq!(
            verify(&at(2_006), 2_010),
            Err(VerifyError::Invalid(
                "issued after its key stopped signing".into()
            ))
        );
        // iat alone (no nbf) is held to the same leeway.
        let mut future = claims(1_000);
        future.as_object_mut().expect("object").remove("nbf");
        let token = signer.sign(&future).expect("sign");
        assert!(verify(&token, 995).is_ok());
        assert_eq!(
            verify(&token, 994),
            Err(VerifyError::Invalid("issued in the future".into()))
        );
        let mut no_iat = claims(1_000);
        no_iat.as_object_mut().expect("object").remove("iat");
        let token = signer.sign(&no_iat).expect("sign");
        assert_eq!(verify(&token, 1_010), Err(VerifyError::Malformed));
    }
}
