//! Signing keys every instance shares through the database: their life cycle, derived from
//! their times ([`describe`]), the [`KeyRing`] that loads, publishes and rotates them, and where
//! the key-encryption key that seals them at rest comes from.

mod kek_file;
mod lifecycle;
mod ring;
mod rotation;

use std::time::Duration;

use crate::config::Settings;
use crate::crypto::CryptoError;
use crate::crypto::keys::KeyAlgorithm;
use crate::store::StoreError;

pub use kek_file::{KekError, load_kek};
pub use lifecycle::{KeyInfo, KeyState, describe};
pub use ring::{Jwks, KeyRing};

/// Key timing policy, in seconds.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    pub algorithm: KeyAlgorithm,
    pub rotation_interval: i64,
    pub publish_ahead: i64,
    pub jwks_max_age: i64,
    pub access_ttl: i64,
    /// Clock skew allowed between instances, in seconds (see
    /// [`VerificationKeys::with_limits`](crate::crypto::jwt::VerificationKeys::with_limits)).
    pub clock_leeway: i64,
}

/// The key timing policy from settings.
pub fn key_policy(settings: &Settings) -> KeyPolicy {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    KeyPolicy {
        algorithm: settings.keys.algorithm,
        rotation_interval: secs(settings.keys.rotation_interval),
        publish_ahead: secs(settings.keys.publish_ahead),
        jwks_max_age: secs(settings.keys.jwks_max_age),
        access_ttl: secs(settings.tokens.access_ttl),
        clock_leeway: secs(settings.tokens.clock_leeway),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("no key with kid {0}")]
    UnknownKid(String),
    #[error("key {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("keys.encryption_key is needed to create or load signing keys")]
    NoKek,
}
