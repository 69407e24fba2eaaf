//! User administration.

use serde_json::json;

use super::{Admin, AdminError};
use crate::oauth::usernames;
use crate::store::{NewUser, Page, StoreError, UserProfile, UserRecord};

/// What `tessera user update` may change in a profile; `None` leaves a field alone, and
/// `Some(None)` clears it. No `Debug`: it holds personal data.
#[derive(Clone, Default)]
pub struct ProfileUpdate {
    pub email: Option<Option<String>>,
    pub email_verified: Option<bool>,
    pub name: Option<Option<String>>,
}

/// Characters that change how text around them is shown without showing themselves (bidi
/// overrides, zero-width and invisible characters): refused in names, so that a name cannot
/// pass for another in a client's user interface.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}')
}

/// An email address as OpenID Connect will hand it out: printable ASCII (internationalised
/// addresses are not taken), one `@` with text on both sides, at most 254 characters
/// (RFC 5321 §4.5.3.1.3). Whether it is the user's is for `--email-verified` to say.
fn check_profile(profile: &UserProfile) -> Result<(), AdminError> {
    if let Some(email) = &profile.email {
        let well_formed = email.len() <= 254
            && email.bytes().all(|b| b.is_ascii_graphic())
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && !domain.is_empty() && !domain.contains('@')
            });
        if !well_formed {
            return Err(AdminError::Invalid(format!(
                "{email:?} is not an email address"
            )));
        }
    }
    if profile.email_verified && profile.email.is_none() {
        return Err(AdminError::Invalid(
            "--email-verified needs an email".into(),
        ));
    }
    if let Some(name) = &profile.name
        && (name.is_empty()
            || name.chars().count() > 200
            || name
                .chars()
                .any(|c| c.is_control() || is_invisible_format(c)))
    {
        return Err(AdminError::Invalid(
            "name must be 1 to 200 characters, without control or invisible formatting characters"
                .into(),
        ));
    }
    Ok(())
}

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
        self.add_user_with_profile(username, password, roles, disabled, UserProfile::default())
            .await
    }

    pub async fn add_user_with_profile(
        &self,
        username: &str,
        password: &str,
        roles: &[String],
        disabled: bool,
        profile: UserProfile,
    ) -> Result<UserRecord, AdminError> {
        usernames::validate(username).map_err(|e| AdminError::Invalid(e.into()))?;
        check_profile(&profile)?;
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
            profile,
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

    /// Changes a user's email, its verification or name. A new email is unverified unless
    /// the update says otherwise.
    pub async fn update_profile(
        &self,
        username: &str,
        update: ProfileUpdate,
    ) -> Result<UserRecord, AdminError> {
        let user = self.user(username).await?;
        let mut profile = user.profile.clone();
        if let Some(email) = update.email {
            if email != profile.email {
                profile.email_verified = false;
            }
            profile.email = email;
        }
        if let Some(verified) = update.email_verified {
            profile.email_verified = verified;
        }
        if let Some(name) = update.name {
            profile.name = name;
        }
        check_profile(&profile)?;
        // The address itself is personal data: the audit row says what changed, not to what.
        let event = self
            .event("user.update", &user.username)
            .user(&user.username)
            .details(json!({
                "email_changed": profile.email != user.profile.email,
                "email_verified": profile.email_verified,
                "name_changed": profile.name != user.profile.name,
            }));
        self.store
            .set_user_profile(&user.id, &profile, self.clock.now(), &event)
            .await?;
        self.user(username).await
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
