//! The signing keys every instance shares through the database, their life cycle
//! (pending → active → retired → gone) and the JWKS built from them.
//!
//! A key's state is derived from its times, never stored: the active key is the newest
//! generation whose `activates_at` has passed and that is not retired. So there is exactly one
//! active key at any moment on every instance, and rotation is just inserting the next
//! generation, which the database's unique constraint lets only one instance do.

mod kek_file;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::CryptoError;
use crate::crypto::jwt::{JwtSigner, VerificationKeys};
use crate::crypto::keys::{self, Kek, KeyAlgorithm};
use crate::store::{AuditEvent, Store, StoreError, StoredKey};

pub use kek_file::{KekError, load_kek};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// Signing.
    Active,
    /// Published for verifiers until every token it signed has expired.
    Retired,
    /// Past that: no longer published, removed by clean-up.
    Expired,
    /// Compromised (`tessera key revoke`): not published, verifies nothing, never signs again.
    Revoked,
}

/// Key timing policy, in seconds.
#[derive(Debug, Clone)]
pub struct KeyPolicy {
    pub algorithm: KeyAlgorithm,
    pub rotation_interval: i64,
    pub publish_ahead: i64,
    pub jwks_max_age: i64,
    pub access_ttl: i64,
    /// Clock skew allowed between instances, in seconds (see [`VerificationKeys::with_limits`]).
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

/// One key as `tessera key list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub generation: i64,
    pub algorithm: String,
    pub state: KeyState,
    pub created_at: i64,
    pub activates_at: i64,
    /// When it stopped (or will stop) signing, if known.
    pub retires_at: Option<i64>,
    /// When it leaves the JWKS, if known.
    pub unpublished_at: Option<i64>,
    pub revoked_at: Option<i64>,
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

/// Derives every key's state at `now`. `keys` is in generation order; `max_ttl` is the longest
/// access-token lifetime any client can get.
pub fn describe(keys: &[StoredKey], now: i64, max_ttl: i64) -> Vec<KeyInfo> {
    let active = active_at(keys.iter(), now).map(|k| k.generation);
    keys.iter()
        .map(|k| {
            // A key stops signing when it is retired or when a newer generation activates.
            let superseded = keys
                .iter()
                .filter(|n| n.generation > k.generation && ever_signs(n))
                .map(|n| n.activates_at)
                .min();
            let retires_at = match (k.retired_at, superseded) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let unpublished_at = retires_at.map(|r| r.saturating_add(max_ttl));
            // A revoked key is kept (as a record only) until it would have expired anyway.
            let state = if unpublished_at.is_some_and(|u| u <= now) {
                KeyState::Expired
            } else if k.revoked_at.is_some() {
                KeyState::Revoked
            } else if Some(k.generation) == active {
                KeyState::Active
            } else if k.activates_at > now && retires_at.is_none_or(|r| r > k.activates_at) {
                // Pending only if it will sign: not retired, nor superseded by a newer key,
                // before it activates.
                KeyState::Pending
            } else {
                KeyState::Retired
            };
            KeyInfo {
                kid: k.kid.clone(),
                generation: k.generation,
                algorithm: k.algorithm.clone(),
                state,
                created_at: k.created_at,
                activates_at: k.activates_at,
                retires_at,
                unpublished_at,
                revoked_at: k.revoked_at,
            }
        })
        .collect()
}

/// Whether a key signs at all: not retired (or revoked) before it activated.
fn ever_signs(key: &StoredKey) -> bool {
    key.retired_at.is_none_or(|r| r > key.activates_at)
}

/// The key that signs at `now`: the newest generation that has activated (a newer one
/// supersedes it for good, even once retired or revoked itself), unless that one is retired or
/// revoked by now; then none, until a successor activates (retiring and revoking make one).
/// A revoked key never signs again, even where `retired_at` still lies ahead (a clock behind).
fn active_at<'a>(keys: impl Iterator<Item = &'a StoredKey>, now: i64) -> Option<&'a StoredKey> {
    keys.filter(|k| k.activates_at <= now && ever_signs(k))
        .max_by_key(|k| k.generation)
        .filter(|k| k.retired_at.is_none_or(|r| r > now) && k.revoked_at.is_none())
}

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
    store: Store,
    kek: Option<Kek>,
    clock: Arc<dyn Clock>,
    policy: KeyPolicy,
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

    async fn max_ttl(&self) -> Result<i64, KeyError> {
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

    /// Creates the first key, or the next generation when the active one is due to rotate.
    async fn rotate_if_due(&self) -> Result<(), KeyError> {
        let keys = self.store.list_keys().await?;
        let now = self.clock.now();
        let infos = describe(&keys, now, 0);
        let has_active = infos.iter().any(|k| k.state == KeyState::Active);
        // A revoked key, or one retired before it activated, will never sign: the schedule
        // follows the newest one that may.
        let newest = keys
            .iter()
            .rfind(|k| k.revoked_at.is_none() && ever_signs(k));
        let due = match newest {
            None => Some(now),
            Some(_) if !has_active => Some(now),
            Some(n) if n.activates_at > now => None,
            Some(n)
                if now
                    >= n.activates_at + self.policy.rotation_interval
                        - self.policy.publish_ahead =>
            {
                Some(now + self.policy.publish_ahead)
            }
            Some(_) => None,
        };
        if let Some(activates_at) = due {
            self.insert_next(&keys, activates_at, "system").await?;
        }
        Ok(())
    }

    /// Adds the next generation. Losing the race to another instance is not an error: the
    /// other instance's key serves.
    async fn insert_next(
        &self,
        keys: &[StoredKey],
        activates_at: i64,
        actor: &str,
    ) -> Result<Option<String>, KeyError> {
        let kek = self.kek.as_ref().ok_or(KeyError::NoKek)?;
        let generation = keys.last().map_or(1, |k| k.generation + 1);
        let generated = keys::generate(self.policy.algorithm)?;
        let now = self.clock.now();
        let stored = StoredKey {
            kid: generated.kid.clone(),
            generation,
            algorithm: generated.algorithm.as_str().to_owned(),
            public_jwk: generated.public_jwk.to_string(),
            private_key: kek.seal(&generated.kid, &generated.pkcs8)?,
            created_at: now,
            activates_at,
            retired_at: None,
            revoked_at: None,
        };
        let event = AuditEvent::new(now, actor, "key.create", &generated.kid).details(json!({
            "generation": generation,
            "algorithm": generated.algorithm.as_str(),
            "activates_at": activates_at,
        }));
        match self.store.insert_key(&stored, &event).await {
            Ok(()) => {
                tracing::info!(kid = %generated.kid, generation, activates_at, "signing key created");
                Ok(Some(generated.kid))
            }
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// `tessera key rotate`: a new key, published now, signing after `publish_ahead` (or at
    /// once with `immediately`, at the risk of verifiers that cached the JWKS).
    pub async fn rotate(&self, immediately: bool, actor: &str) -> Result<String, KeyError> {
        let keys = self.store.list_keys().await?;
        let now = self.clock.now();
        let activates_at = if immediately {
            now
        } else {
            now + self.policy.publish_ahead
        };
        let kid = self.insert_next(&keys, activates_at, actor).await?;
        self.reload().await?;
        kid.ok_or(KeyError::Store(StoreError::Conflict(
            "signing key generation",
        )))
    }

    /// `tessera key retire KID`: stops a key signing now. Retiring the active key activates a
    /// successor at once (the pending one if there is one, else a new key) so signing never
    /// stops.
    pub async fn retire(&self, kid: &str, actor: &str) -> Result<(), KeyError> {
        let now = self.clock.now();
        self.hand_over(kid, now, now, actor).await?;
        let event = AuditEvent::new(now, actor, "key.retire", kid);
        self.store.retire_key(kid, now, &event).await?;
        self.reload().await
    }

    /// `tessera key revoke KID`, for a compromised key: it leaves the JWKS and verifies no
    /// token again, on every instance as soon as it hears of the change. Revoking the active
    /// key hands signing to a successor first, as retiring does, activated a clock leeway in
    /// the past so that an instance whose clock is behind has a key to sign with too.
    pub async fn revoke(&self, kid: &str, actor: &str) -> Result<(), KeyError> {
        let now = self.clock.now();
        let successor_from = now.saturating_sub(self.policy.clock_leeway);
        let info = self.hand_over(kid, now, successor_from, actor).await?;
        if info.revoked_at.is_some() {
            return Err(KeyError::AlreadyRevoked(kid.to_owned()));
        }
        // Replaced less than a leeway ago: where clocks are behind it still signs, so its
        // successor's activation moves back to `successor_from` as well.
        let keys = self.store.list_keys().await?;
        if active_at(keys.iter(), successor_from).is_some_and(|k| k.kid == kid)
            && let Some(current) = active_at(keys.iter(), now).filter(|k| k.kid != kid)
        {
            let event = AuditEvent::new(now, actor, "key.activate", &current.kid)
                .details(json!({ "activates_at": successor_from, "succeeds": kid }));
            self.store
                .activate_key_at(&current.kid, successor_from, &event)
                .await?;
        }
        let event = AuditEvent::new(now, actor, "key.revoke", kid)
            .details(json!({ "generation": info.generation, "state_was": info.state }));
        match self.store.revoke_key(kid, now, &event).await {
            Err(StoreError::NotFound(_)) => return Err(KeyError::AlreadyRevoked(kid.to_owned())),
            other => other?,
        }
        self.reload().await
    }

    /// Before `kid` stops signing: when it is the active key at `now`, makes a successor
    /// active from `from` (the pending one if there is one, else a new key; if another
    /// instance's rotation inserted that new key first, that one) so signing never stops.
    async fn hand_over(
        &self,
        kid: &str,
        now: i64,
        from: i64,
        actor: &str,
    ) -> Result<KeyInfo, KeyError> {
        let keys = self.store.list_keys().await?;
        let infos = describe(&keys, now, self.max_ttl().await?);
        let info = infos
            .iter()
            .find(|k| k.kid == kid)
            .ok_or_else(|| KeyError::UnknownKid(kid.to_owned()))?;
        if info.state != KeyState::Active {
            return Ok(info.clone());
        }
        // Only a newer generation can take over: `active_at` never goes back to an older one.
        let pending = infos
            .iter()
            .filter(|k| k.state == KeyState::Pending && k.generation > info.generation)
            .max_by_key(|k| k.generation)
            .map(|k| k.kid.clone());
        let successor = match pending {
            Some(pending) => pending,
            None => match self.insert_next(&keys, from, actor).await? {
                Some(created) => created,
                None => {
                    // Lost the race for the generation: the winner's key takes over.
                    let keys = self.store.list_keys().await?;
                    keys.iter()
                        .rfind(|k| {
                            k.generation > info.generation
                                && k.revoked_at.is_none()
                                && ever_signs(k)
                        })
                        .map(|k| k.kid.clone())
                        .ok_or_else(|| KeyError::UnknownKid(kid.to_owned()))?
                }
            },
        };
        let event = AuditEvent::new(now, actor, "key.activate", &successor)
            .details(json!({ "activates_at": from, "succeeds": kid }));
        self.store.activate_key_at(&successor, from, &event).await?;
        Ok(info.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(generation: i64, activates_at: i64, retired_at: Option<i64>) -> StoredKey {
        StoredKey {
            revoked_at: None,
            kid: format!("k{generation}"),
            generation,
            algorithm: "ES256".into(),
            public_jwk: "{}".into(),
            private_key: Vec::new(),
            created_at: 0,
            activates_at,
            retired_at,
        }
    }

    fn states(keys: &[StoredKey], now: i64) -> Vec<KeyState> {
        describe(keys, now, 600)
            .into_iter()
            .map(|k| k.state)
            .collect()
    }

    #[test]
    fn life_cycle_is_derived_from_times() {
        use KeyState::*;
        let keys = vec![key(1, 0, None), key(2, 1000, None)];
        assert_eq!(states(&keys, 500), vec![Active, Pending]);
        assert_eq!(states(&keys, 1000), vec![Retired, Active]);
        assert_eq!(states(&keys, 1599), vec![Retired, Active]);
        assert_eq!(states(&keys, 1600), vec![Expired, Active]);
    }

    #[test]
    fn exactly_one_active_key_whatever_the_times() {
        for now in [0, 10, 100, 1000, 5000] {
            let keys = vec![
                key(1, 0, None),
                key(2, 100, None),
                key(3, 90, None),
                key(4, 6000, None),
            ];
            let active = states(&keys, now)
                .into_iter()
                .filter(|s| *s == KeyState::Active)
                .count();
            assert_eq!(active, 1, "at {now}");
        }
    }

    #[test]
    fn a_superseded_key_never_signs_again() {
        use KeyState::*;
        // k2 superseded k1, then was revoked; k3 was retired while still pending.
        let mut k2 = key(2, 100, Some(500));
        k2.revoked_at = Some(500);
        let keys = vec![key(1, 0, None), k2, key(3, 1000, Some(400))];
        let at = |now| states(&keys, now);
        assert_eq!(at(600), vec![Retired, Revoked, Retired], "no key signs");
        assert!(active_at(keys.iter(), 600).is_none());
        assert!(active_at(keys.iter(), 2000).is_none(), "k3 never activates");
        assert!(
            active_at(keys.iter(), 300).is_none(),
            "revoked: not even where the clock is behind"
        );
        assert_eq!(active_at(keys.iter(), 50).map(|k| k.generation), Some(1));
    }

    #[test]
    fn a_pending_key_superseded_before_it_activates_is_not_pending() {
        use KeyState::*;
        // k2 was published to activate at 3700; k3 was made to sign at once at 200.
        let keys = vec![key(1, 0, None), key(2, 3700, None), key(3, 200, None)];
        assert_eq!(states(&keys, 300), vec![Retired, Retired, Active]);
        assert_eq!(active_at(keys.iter(), 4000).map(|k| k.generation), Some(3));
    }

    #[test]
    fn retired_key_hands_over() {
        use KeyState::*;
        let keys = vec![key(1, 0, Some(50)), key(2, 50, None)];
        assert_eq!(states(&keys, 60), vec![Retired, Active]);
        let info = describe(&keys, 60, 600);
        assert_eq!(info[0].retires_at, Some(50));
        assert_eq!(info[0].unpublished_at, Some(650));
    }
}
