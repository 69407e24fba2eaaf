//! Refresh-token sessions (families): a user's live ones, and revoking them by family, user
//! (optionally with one client) or client.

use serde_json::json;

use super::{Admin, AdminError};
use crate::store::{AuditEvent, FamilySummary, Page, UserRecord};

/// The reason recorded on families an administrator revokes.
const REVOKED_BY_ADMIN: &str = "revoked_by_admin";

impl Admin {
    /// One page of a user's live sessions, newest first.
    pub async fn sessions(
        &self,
        username: &str,
        page: &Page,
    ) -> Result<Vec<FamilySummary>, AdminError> {
        let user = self.user(username).await?;
        Ok(self
            .store
            .list_families(&user.id, self.clock.now(), page)
            .await?)
    }

    /// Revokes one family; `false` when there is no live family with that id.
    pub async fn revoke_session(&self, family_id: &str) -> Result<bool, AdminError> {
        let now = self.clock.now();
        let event = self
            .revocation(now, family_id)
            .details(json!({ "reason": REVOKED_BY_ADMIN }));
        Ok(self
            .store
            .revoke_family(
                family_id,
                now,
                REVOKED_BY_ADMIN,
                std::slice::from_ref(&event),
            )
            .await?)
    }

    /// Revokes a user's sessions, only those with `client` when given; returns how many.
    pub async fn revoke_user_sessions(
        &self,
        user: &UserRecord,
        client: Option<&str>,
    ) -> Result<u64, AdminError> {
        if let Some(c) = client {
            self.client(c).await?;
        }
        let now = self.clock.now();
        let mut event = self.revocation(now, &user.username).user(&user.username);
        event.client_id = client.map(str::to_owned);
        Ok(self
            .store
            .revoke_families(Some(&user.id), client, now, REVOKED_BY_ADMIN, &event)
            .await?)
    }

    /// Revokes every session of a client; returns how many.
    pub async fn revoke_client_sessions(&self, client_id: &str) -> Result<u64, AdminError> {
        self.client(client_id).await?;
        let now = self.clock.now();
        let event = self.revocation(now, client_id).client(client_id);
        Ok(self
            .store
            .revoke_families(None, Some(client_id), now, REVOKED_BY_ADMIN, &event)
            .await?)
    }

    /// The audit event of a revocation, timed as the revocation itself.
    fn revocation(&self, now: i64, target: &str) -> AuditEvent {
        AuditEvent::new(now, self.actor.clone(), "token.revoke", target)
    }
}
