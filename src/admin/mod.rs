//! Administration: what `tessera user|role|client|token|audit|gc` do, with input checked and
//! every change audited. The CLI is a thin front door onto this.

mod clients;
mod roles;
mod users;

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::password::{HashError, Hasher};
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
        let hasher =
            Hasher::new(&settings.passwords).map_err(|e| AdminError::Invalid(e.to_string()))?;
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
    pub async fn gc(&self) -> Result<crate::store::GcReport, AdminError> {
        let now = self.clock.now();
        let retention =
            i64::try_from(self.settings.audit_retention().as_secs()).unwrap_or(i64::MAX);
        let mut total = crate::store::GcReport::default();
        loop {
            let batch = self
                .store
                .gc_batch(
                    now,
                    now.saturating_sub(retention),
                    self.settings.maintenance.gc_batch_size,
                )
                .await?;
            let done = batch == crate::store::GcReport::default();
            total.refresh_families += batch.refresh_families;
            total.refresh_tokens += batch.refresh_tokens;
            total.denylist += batch.denylist;
            total.audit_rows += batch.audit_rows;
            if done {
                break;
            }
        }
        let backoff =
            i64::try_from(self.settings.security.max_backoff.as_secs()).unwrap_or(i64::MAX);
        while self
            .store
            .gc_login_throttle(
                now.saturating_sub(backoff.max(3600)),
                self.settings.maintenance.gc_batch_size,
            )
            .await?
            > 0
        {}
        Ok(total)
    }
}
