//! Signing-key administration: the keys and their states, and rotating, retiring and revoking
//! through the same key ring every server runs.

use std::sync::Arc;

use super::{Admin, AdminError};
use crate::keys::{KeyInfo, KeyRing, KeyState, describe, key_policy, load_kek};

impl Admin {
    /// Every key in the database with its state now.
    pub async fn keys(&self) -> Result<Vec<KeyInfo>, AdminError> {
        let keys = self.store.list_keys().await?;
        let max_ttl = i64::try_from(self.settings.tokens.access_ttl.as_secs())
            .unwrap_or(i64::MAX)
            .max(self.store.max_client_access_ttl().await?.unwrap_or(0));
        Ok(describe(&keys, self.clock.now(), max_ttl))
    }

    /// A new key, published now and signing after `keys.publish_ahead`, or at once with
    /// `immediately`; returns its kid.
    pub async fn rotate_key(&self, immediately: bool) -> Result<String, AdminError> {
        Ok(self
            .key_ring()
            .await?
            .rotate(immediately, &self.actor)
            .await?)
    }

    /// Stops a key signing now; it stays published until its tokens expire.
    pub async fn retire_key(&self, kid: &str) -> Result<(), AdminError> {
        Ok(self.key_ring().await?.retire(kid, &self.actor).await?)
    }

    /// Unpublishes a compromised key for good; returns the kid of the key that signs now.
    pub async fn revoke_key(&self, kid: &str) -> Result<String, AdminError> {
        let ring = self.key_ring().await?;
        ring.revoke(kid, &self.actor).await?;
        Ok(ring
            .describe()
            .into_iter()
            .find(|k| k.state == KeyState::Active)
            .map(|k| k.kid)
            .unwrap_or_default())
    }

    /// The key ring as a server starts it (creating the key-encryption key file beside a
    /// SQLite database if there is none yet).
    async fn key_ring(&self) -> Result<Arc<KeyRing>, AdminError> {
        let kek = load_kek(&self.settings, &self.store, true)?;
        Ok(KeyRing::start(
            self.store.clone(),
            kek,
            self.clock.clone(),
            key_policy(&self.settings),
        )
        .await?)
    }
}
