//! Reading the audit log.

use super::{Admin, AdminError};
use crate::oauth::usernames;
use crate::store::{AuditFilter, AuditRow};

impl Admin {
    /// Audit rows matching `filter`, newest first; its username is matched normalized.
    pub async fn audit_log(&self, mut filter: AuditFilter) -> Result<Vec<AuditRow>, AdminError> {
        filter.username = filter.username.map(|u| usernames::normalize(&u));
        Ok(self.store.audit_query(&filter).await?)
    }
}
