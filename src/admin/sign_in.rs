//! Login sessions of Tessera's sign-in page and the consents users gave clients: listing them,
//! ending them, forgetting them.

use serde_json::json;

use super::{Admin, AdminError};
use crate::store::{ConsentRecord, SessionRecord, SessionTarget, StoreError};

impl Admin {
    /// A user's live login sessions, newest first.
    pub async fn login_sessions(&self, username: &str) -> Result<Vec<SessionRecord>, AdminError> {
        let user = self.user(username).await?;
        Ok(self.store.list_sessions(&user.id, self.clock.now()).await?)
    }

    /// Ends one login session, or all of a user's, with the refresh families started from
    /// them (except those granted offline_access); returns how many sessions ended.
    pub async fn end_login_sessions(
        &self,
        session: Option<&str>,
        username: Option<&str>,
    ) -> Result<u64, AdminError> {
        let now = self.clock.now();
        let (target, what) = match (session, username) {
            (Some(id), None) => (SessionTarget::One(id), id.to_owned()),
            (None, Some(name)) => {
                let user = self.user(name).await?;
                let event = self
                    .event("session.end", &user.username)
                    .user(&user.username)
                    .details(json!({ "reason": "revoked_by_admin" }));
                return Ok(self
                    .store
                    .end_sessions(
                        SessionTarget::User(&user.id),
                        now,
                        "revoked_by_admin",
                        &event,
                    )
                    .await?);
            }
            _ => return Err(AdminError::Invalid("give a session id or --user".into())),
        };
        let event = self
            .event("session.end", &what)
            .details(json!({ "reason": "revoked_by_admin" }));
        Ok(self
            .store
            .end_sessions(target, now, "revoked_by_admin", &event)
            .await?)
    }

    /// What a user allowed each client.
    pub async fn consents(&self, username: &str) -> Result<Vec<ConsentRecord>, AdminError> {
        let user = self.user(username).await?;
        Ok(self.store.list_consents(&user.id).await?)
    }

    /// Forgets a consent, revoking the client's refresh tokens for that user: the next sign-in
    /// asks again.
    pub async fn revoke_consent(&self, username: &str, client_id: &str) -> Result<(), AdminError> {
        let user = self.user(username).await?;
        let event = self
            .event("consent.revoke", client_id)
            .user(&user.username)
            .client(client_id);
        match self
            .store
            .revoke_consent(&user.id, client_id, self.clock.now(), &event)
            .await
        {
            Err(StoreError::NotFound(_)) => Err(AdminError::NotFound(format!(
                "{} has given {client_id} no consent",
                user.username
            ))),
            other => Ok(other?),
        }
    }
}
