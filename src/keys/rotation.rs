//! Changing the key set: the automatic rotation, and `tessera key rotate|retire|revoke`, each
//! making sure a successor signs before a key stops.

use serde_json::json;

use super::lifecycle::{KeyInfo, KeyState, active_at, describe, ever_signs};
use super::{KeyError, KeyRing};
use crate::store::{AuditEvent, StoreError, StoredKey};

impl KeyRing {
    /// Creates the first key, or the next generation when the active one is due to rotate.
    pub(super) async fn rotate_if_due(&self) -> Result<(), KeyError> {
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
        let generated = crate::crypto::keys::generate(self.policy.algorithm)?;
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
