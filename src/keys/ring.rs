//! The key ring: the keys loaded from the database, the signers of those that sign or soon will,
//! and the JWKS and verification keys built from them, all replaced at once on every reload.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use aws_lc_rs::digest::{SHA256, digest};
use serde_json::{Value, json};

use super::lifecycle::{KeyInfo, KeyState, active_at, describe};
use super::{KeyError, KeyPolicy};
use crate::clock::Clock;
use crate::crypto::CryptoError;
use crate::crypto::jwt::{JwtSigner, VerificationKeys};
use crate::crypto::keys::{Kek, KeyAlgorithm};
use crate::store::{Store, StoredKey};

/// The JWKS document, serialized once per change.
#[derive(Debug, Clone)]
pub struct Jwks {
    pub body: Arc<[u8]>,
    pub etag: String,
}

struct LoadedKey {
    stored: StoredKey,
    signer: Option<Arc<JwtSigner>>,
}

struct KeySet {
    keys: Vec<LoadedKey>,
    max_ttl: i64,
    jwks: Jwks,
    verification: Arc<VerificationKeys>,
}

pub struct KeyRing {
    pub(super) store: Store,
    pub(super) kek: Option<Kek>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) policy: KeyPolicy,
    state: RwLock<Arc<KeySet>>,
    /// One reload at a time: two overlapping ones (the periodic tick and the change watch)
    /// could otherwise put an older read in place after a newer one.
    reloading: tokio::sync::Mutex<()>,
}

impl KeyRing {
    /// Loads the keys, creating the first one (or the next, when rotation is due).
    pub async fn start(
        store: Store,
        kek: Option<Kek>,
        clock: Arc<dyn Clock>,
        policy: KeyPolicy,
    ) -> Result<Arc<Self>, KeyError> {
        let ring = Arc::new(Self {
            store,
            kek,
            clock,
            policy,
            state: RwLock::new(Arc::new(KeySet {
                keys: Vec::new(),
                max_ttl: 0,
                jwks: Jwks {
                    body: Arc::from(&b"{\"keys\":[]}"[..]),
                    etag: String::new(),
                },
                verification: Arc::new(VerificationKeys::default()),
            })),
            reloading: tokio::sync::Mutex::new(()),
        });
        ring.tick().await?;
        Ok(ring)
    }

    /// One maintenance step: rotate if due, then reload from the database.
    pub async fn tick(&self) -> Result<(), KeyError> {
        self.rotate_if_due().await?;
        self.reload().await
    }

    fn current(&self) -> Arc<KeySet> {
        match self.state.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The key that signs at `now`.
    pub fn active_signer(&self, now: i64) -> Option<Arc<JwtSigner>> {
        let set = self.current();
        let active = active_at(set.keys.iter().map(|k| &k.stored), now)?;
        set.keys
            .iter()
            .find(|k| k.stored.kid == active.kid)
            .and_then(|k| k.signer.clone())
    }

    pub fn jwks(&self) -> Jwks {
        self.current().jwks.clone()
    }

    pub fn jwks_max_age(&self) -> i64 {
        self.policy.jwks_max_age
    }

    /// Public keys of every published key, for verifying our own tokens.
    pub fn verification_keys(&self) -> Arc<VerificationKeys> {
        self.current().verification.clone()
    }

    pub fn describe(&self) -> Vec<KeyInfo> {
        let set = self.current();
        let stored: Vec<StoredKey> = set.keys.iter().map(|k| k.stored.clone()).collect();
        describe(&stored, self.clock.now(), set.max_ttl)
    }

    pub(super) async fn max_ttl(&self) -> Result<i64, KeyError> {
        let client_max = self.store.max_client_access_ttl().await?.unwrap_or(0);
        Ok(self.policy.access_ttl.max(client_max))
    }

    /// Re-reads the keys; signers already parsed are kept.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let _one_at_a_time = self.reloading.lock().await;
        let stored = self.store.list_keys().await?;
        let max_ttl = self.max_ttl().await?;
        let now = self.clock.now();
        let infos = describe(&stored, now, max_ttl);
        let previous = self.current();
        let mut parsed: HashMap<&str, Arc<JwtSigner>> = previous
            .keys
            .iter()
            .filter_map(|k| k.signer.clone().map(|s| (k.stored.kid.as_str(), s)))
            .collect();
        let mut keys = Vec::with_capacity(stored.len());
        let mut published = Vec::new();
        let mut signs_until = HashMap::new();
        for (key, info) in stored.into_iter().zip(&infos) {
            let signs_soon = matches!(info.state, KeyState::Active | KeyState::Pending);
            let signer = match (parsed.remove(key.kid.as_str()), &self.kek) {
                (Some(existing), _) => Some(existing),
                (None, Some(kek)) if signs_soon => {
                    let algorithm: KeyAlgorithm = key.algorithm.parse()?;
                    let pkcs8 = kek.open(&key.kid, &key.private_key)?;
                    Some(Arc::new(JwtSigner::from_pkcs8(
                        &key.kid, algorithm, &pkcs8,
                    )?))
                }
                _ => None,
            };
            if !matches!(info.state, KeyState::Expired | KeyState::Revoked) {
                let jwk: Value = serde_json::from_str(&key.public_jwk)
                    .map_err(|e| CryptoError::MalformedKey(e.to_string()))?;
                published.push(jwk);
                if let Some(until) = info.retires_at {
                    signs_until.insert(key.kid.clone(), until);
                }
            }
            keys.push(LoadedKey {
                stored: key,
                signer,
            });
        }
        let body = json!({ "keys": published }).to_string();
        let hash = digest(&SHA256, body.as_bytes());
        let etag = format!("\"{}\"", hex::encode(&hash.as_ref()[..12]));
        let verification = Arc::new(
            VerificationKeys::from_jwks(published.iter())
                .with_limits(signs_until, self.policy.clock_leeway),
        );
        let set = Arc::new(KeySet {
            keys,
            max_ttl,
            jwks: Jwks {
                body: Arc::from(body.into_bytes()),
                etag,
            },
            verification,
        });
        match self.state.write() {
            Ok(mut guard) => *guard = set,
            Err(poisoned) => *poisoned.into_inner() = set,
        }
        Ok(())
    }
}
