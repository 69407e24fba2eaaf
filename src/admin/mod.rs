//! Administration: what `tessera user|role|client|token|audit|gc` do, with input checked and
//! every change audited. The CLI is a thin front door onto this.

mod clients;
mod roles;
mod users;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::password::{HashError, Hasher};
use crate::oauth::maintenance::{CleanupPolicy, CleanupReport, collect_garbage};
use crate::store::{AuditEvent, Store, StoreError};

pub use clients::{ClientSpec, ClientUpdate};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("password hashing failed: {0}")]
    Hash(#[from] HashError),
}

pub struct Admin {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// Who is acting, as the audit log records it (`cli:<os user>`).
    pub actor: String,
    hasher: Hasher,
}

impl Admin {
    pub fn new(
        store: Store,
        clock: Arc<dyn Clock>,
        settings: Settings,
        actor: String,
    ) -> Result<Self, AdminError> {
        let hasher = Hasher::for_new_passwords(&settings.passwords)
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        Ok(Self {
            store,
            clock,
            settings,
            actor,
            hasher,
        })
    }

    fn event(&self, action: &'static str, target: &str) -> AuditEvent {
        AuditEvent::new(self.clock.now(), self.actor.clone(), action, target)
    }

    /// Deletes what has expired, batch by batch, until nothing is left.
    pub async fn gc(&self) -> Result<CleanupReport, AdminError> {
        let policy = CleanupPolicy::from_settings(&self.settings);
        Ok(collect_garbage(&self.store, self.clock.now(), &policy).await?)
    }
}
