//! User administration.

use serde_json::json;

use super::{Admin, AdminError};
use crate::oauth::usernames;
use crate::store::{NewUser, Page, StoreError, UserRecord};

/// Where the page after `user` starts: what `--after` takes, its normalized username.
pub fn user_cursor(user: &UserRecord) -> String {
    usernames::normalize(&user.username)
}

impl Admin {
    fn check_password(&self, username: &str, password: &str) -> Result<(), AdminError> {
        let policy = &self.settings.passwords;
        let length = password.chars().count();
        if length < policy.min_length {
            return Err(AdminError::Invalid(format!(
                "password is too short: at least {} characters",
                policy.min_length
            )));
        }
        if length > policy.max_length {
            return Err(AdminError::Invalid(format!(
                "password is too long: at most {} characters",
                policy.max_length
            )));
        }
        if usernames::normalize(password) == usernames::normalize(username) {
            return Err(AdminError::Invalid(
                "password must not equal the username".into(),
            ));
        }
        Ok(())
    }

    pub async fn user(&self, username: &str) -> Result<UserRecord, AdminError> {
        usernames::validate(username).map_err(|e| AdminError::Invalid(e.into()))?;
        self.store
            .find_user(&usernames::normalize(username))
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("user {username} does not exist")))
    }

    pub async fn add_user(
        &self,
        username: &str,
        password: &str,
        roles: &[String],
        disabled: bool,
    ) -> Result<UserRecord, AdminError> {
        usernames::validate(username).map_err(|e| AdminError::Invalid(e.into()))?;
        self.check_password(username, password)?;
        let mut roles = roles.to_vec();
        roles.sort();
        roles.dedup();
        let hash = self.hasher.hash(password).await?;
        let user = NewUser {
            id: uuid::Uuid::new_v4().to_string(),
            username: username.to_owned(),
            username_normalized: usernames::normalize(username),
            password_hash: hash,
            disabled,
            roles: roles.clone(),
            now: self.clock.now(),
        };
        let event = self
            .event("user.add", username)
            .user(username)
            .details(json!({ "roles": roles, "disabled": disabled }));
        match self.store.create_user(&user, &event).await {
            Ok(()) => self.user(username).await,
            Err(StoreError::Conflict(_)) => Err(AdminError::Conflict(format!(
                "user {username} already exists"
            ))),
            Err(StoreError::NotFound(_)) => Err(self.missing_role(&roles).await),
            Err(e) => Err(e.into()),
        }
    }

    /// One page of users; `prefix` is matched against normalized usernames.
    pub async fn list_users(
        &self,
        page: &Page,
        prefix: Option<&str>,
    ) -> Result<Vec<UserRecord>, AdminError> {
        let prefix = prefix.map(usernames::normalize);
        let page = Page {
            after: page.after.as_deref().map(usernames::normalize),
            limit: page.limit,
        };
        Ok(self.store.list_users(&page, prefix.as_deref()).await?)
    }

    pub async fn set_password(&self, username: &str, password: &str) -> Result<(), AdminError> {
        let user = self.user(username).await?;
        self.check_password(&user.username, password)?;
        let hash = self.hasher.hash(password).await?;
        let event = self
            .event("user.set_password", &user.username)
            .user(&user.username);
        self.store
            .set_password(&user.id, &hash, self.clock.now(), &event)
            .await?;
        Ok(())
    }

    pub async fn set_disabled(&self, username: &str, disabled: bool) -> Result<(), AdminError> {
        let user = self.user(username).await?;
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        let event = self.event(action, &user.username).user(&user.username);
        self.store
            .set_user_disabled(&user.id, disabled, self.clock.now(), &event)
            .await?;
        Ok(())
    }

    pub async fn delete_user(&self, username: &str) -> Result<(), AdminError> {
        let user = self.user(username).await?;
        let event = self
            .event("user.delete", &user.username)
            .user(&user.username)
            .details(json!({ "id": user.id }));
        self.store.delete_user(&user.id, &event).await?;
        Ok(())
    }

    pub async fn grant_role(&self, username: &str, role: &str) -> Result<(), AdminError> {
        let user = self.user(username).await?;
        let event = self
            .event("user.grant", &user.username)
            .user(&user.username)
            .details(json!({ "role": role }));
        match self.store.grant_role(&user.id, role, &event).await {
            Ok(()) => Ok(()),
            Err(StoreError::NotFound(_)) => Err(self.missing_role(&[role.to_owned()]).await),
            Err(StoreError::Conflict(_)) => Err(AdminError::Conflict(format!(
                "user {} already has role {role}",
                user.username
            ))),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn revoke_role(&self, username: &str, role: &str) -> Result<(), AdminError> {
        let user = self.user(username).await?;
        let event = self
            .event("user.revoke", &user.username)
            .user(&user.username)
            .details(json!({ "role": role }));
        match self.store.revoke_role(&user.id, role, &event).await {
            Err(StoreError::NotFound(_)) => Err(AdminError::NotFound(format!(
                "user {} does not have role {role}",
                user.username
            ))),
            other => Ok(other?),
        }
    }

    async fn missing_role(&self, wanted: &[String]) -> AdminError {
        let existing = self.store.list_roles().await.unwrap_or_default();
        let missing = wanted
            .iter()
            .find(|r| !existing.iter().any(|e| &e.name == *r))
            .cloned()
            .unwrap_or_default();
        AdminError::NotFound(format!(
            "role {missing} does not exist; create it with `tessera role add {missing}`"
        ))
    }
}
