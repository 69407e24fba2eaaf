//! Whether this instance can serve tokens now: its database answers and it holds a key that
//! signs. What `/readyz` and the metrics endpoint ask, so that `http` needs no way to the store.

use super::OAuth;
use crate::store::StoreError;

/// Why this instance cannot serve tokens now.
#[derive(Debug)]
pub enum NotReady {
    Database(StoreError),
    NoSigningKey,
}

impl NotReady {
    /// The reason `/readyz` gives.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Database(StoreError::NoPrimary(_)) => {
                "no database host takes writes (failover in progress?)"
            }
            Self::Database(_) => "database unreachable",
            Self::NoSigningKey => "no active signing key",
        }
    }
}

impl OAuth {
    pub async fn readiness(&self) -> Result<(), NotReady> {
        self.store.ping().await.map_err(NotReady::Database)?;
        if self.keys.active_signer(self.clock.now()).is_none() {
            return Err(NotReady::NoSigningKey);
        }
        Ok(())
    }

    /// Database connections open / idle, for metrics.
    pub fn pool_stats(&self) -> (u32, usize) {
        self.store.pool_stats()
    }
}
