//! Signing keys: generation per algorithm, their public JWK, and encryption of the private half
//! at rest with AES-256-GCM under the configured key-encryption key (KEK).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::CryptoError;

/// Algorithms Tessera signs with (RFC 7518 §3.1 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    ES256,
    RS256,
    EdDSA,
}

impl KeyAlgorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::RS256 => "RS256",
            Self::EdDSA => "EdDSA",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = CryptoError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Self::ES256),
            "RS256" => Ok(Self::RS256),
            "EdDSA" => Ok(Self::EdDSA),
            other => Err(CryptoError::MalformedKey(format!(
                "unknown algorithm {other}"
            ))),
        }
    }
}

/// A freshly generated key pair: PKCS#8 private key and the public JWK (RFC 7517).
pub struct GeneratedKey {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    pub pkcs8: Vec<u8>,
    pub public_jwk: serde_json::Value,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

pub fn generate(algorithm: KeyAlgorithm) -> Result<GeneratedKey, CryptoError> {
    let kid = super::tokens::random_id();
    let rng = SystemRandom::new();
    let (pkcs8, params) = match algorithm {
        KeyAlgorithm::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| CryptoError::KeyGeneration)?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|_| CryptoError::KeyGeneration)?;
            // Uncompressed SEC1 point: 0x04 || x || y.
            let point = pair.public_key().as_ref();
            if point.len() != 65 {
                return Err(CryptoError::KeyGeneration);
            }
            let params = json!({
                "kty": "EC",
                "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            });
            (doc.as_ref().to_vec(), params)
        }
        KeyAlgorithm::EdDSA => {
            let doc =
                Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CryptoError::KeyGeneration)?;
            let pair =
                Ed25519KeyPair::from_pkcs8(doc.as_ref()).map_err(|_| CryptoError::KeyGeneration)?;
            let params = json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
            });
            (doc.as_ref().to_vec(), params)
        }
        KeyAlgorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| CryptoError::KeyGeneration)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der<'static> =
                pair.as_der().map_err(|_| CryptoError::KeyGeneration)?;
            let public = pair.public_key();
            let params = json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            });
            (der.as_ref().to_vec(), params)
        }
    };
    let mut jwk = params;
    jwk["kid"] = json!(kid);
    jwk["alg"] = json!(algorithm.as_str());
    jwk["use"] = json!("sig");
    Ok(GeneratedKey {
        kid,
        algorithm,
        pkcs8,
        public_jwk: jwk,
    })
}

/// The key-encryption key: AES-256-GCM over each signing key's PKCS#8 bytes, with the kid as
/// associated data so a ciphertext cannot be moved to another row.
pub struct Kek(LessSafeKey);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek([redacted])")
    }
}

impl Kek {
    pub fn from_base64(encoded: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(encoded.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim()))
            .map_err(|_| CryptoError::InvalidKek("not valid base64"))?;
        if bytes.len() != 32 {
            return Err(CryptoError::InvalidKek("must decode to exactly 32 bytes"));
        }
        let key = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| CryptoError::InvalidKek("rejected by AES-256-GCM"))?;
        Ok(Self(LessSafeKey::new(key)))
    }

    /// A new random KEK, base64-encoded (for the embedded default's key file).
    pub fn generate_base64() -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        STANDARD.encode(bytes)
    }

    /// nonce (12 bytes) || ciphertext || tag
    pub fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut in_out = plaintext.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut in_out,
            )
            .map_err(|_| CryptoError::KeyGeneration)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&in_out);
        Ok(out)
    }

    pub fn open(&self, kid: &str, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Decrypt);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Decrypt)?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut in_out)
            .map_err(|_| CryptoError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kek_round_trip_and_binding_to_kid() {
        let kek = Kek::from_base64(&Kek::generate_base64()).expect("kek");
        let sealed = kek.seal("kid-1", b"private").expect("seal");
        assert_eq!(kek.open("kid-1", &sealed).expect("open"), b"private");
        assert!(kek.open("kid-2", &sealed).is_err());
        let other = Kek::from_base64(&Kek::generate_base64()).expect("kek");
        assert!(other.open("kid-1", &sealed).is_err());
    }

    #[test]
    fn kek_must_be_32_bytes() {
        assert!(Kek::from_base64("c2hvcnQ=").is_err());
        assert!(Kek::from_base64("%%%").is_err());
    }

    #[test]
    fn every_algorithm_generates_a_public_jwk() {
        for alg in [
            KeyAlgorithm::ES256,
            KeyAlgorithm::EdDSA,
            KeyAlgorithm::RS256,
        ] {
            let key = generate(alg).expect("generate");
            assert_eq!(key.public_jwk["alg"], alg.as_str());
            assert_eq!(key.public_jwk["kid"], key.kid.as_str());
            assert!(
                key.public_jwk.get("d").is_none(),
                "no private material in the JWK"
            );
        }
    }
}
