//! Administration: what `tessera user|role|client|key|token|audit|gc` do, with input checked
//! and every change audited. The CLI is a thin front door onto this, and names only what this
//! module exports.

mod audit;
mod clients;
mod keys;
mod roles;
mod sessions;
mod sign_in;
mod users;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::password::{HashError, Hasher};
use crate::keys::{KekError, KeyError};
use crate::maintenance::{CleanupPolicy, collect_garbage};
use crate::store::{AuditEvent, Store, StoreError};

pub use crate::keys::{KeyInfo, KeyState};
pub use crate::maintenance::CleanupReport;
pub use crate::store::{
    AuditFilter, AuditRow, ClientRecord, FamilySummary, Page, RoleRecord, UserProfile, UserRecord,
};
pub use clients::{ClientSpec, ClientUpdate};
pub use users::{ProfileUpdate, user_cursor};

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
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Kek(#[from] KekError),
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
        let hasher = Hasher::for_new_passwords(&settings.passwords.hash_params())
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
