//! Role administration.

use serde_json::json;

use super::{Admin, AdminError};
use crate::store::{RoleRecord, StoreError};

/// Longest role name accepted.
const MAX_ROLE_LEN: usize = 64;

pub fn validate_role(name: &str) -> Result<(), AdminError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ROLE_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
    if ok {
        Ok(())
    } else {
        Err(AdminError::Invalid(
            "role names are 1 to 64 characters of A-Z a-z 0-9 _ - . :".into(),
        ))
    }
}

impl Admin {
    pub async fn add_role(&self, name: &str, description: &str) -> Result<(), AdminError> {
        validate_role(name)?;
        if description.chars().count() > 1000 || description.chars().any(char::is_control) {
            return Err(AdminError::Invalid(
                "description must be at most 1000 characters, without control characters".into(),
            ));
        }
        let event = self
            .event("role.add", name)
            .details(json!({ "description": description }));
        match self
            .store
            .create_role(name, description, self.clock.now(), &event)
            .await
        {
            Err(StoreError::Conflict(_)) => {
                Err(AdminError::Conflict(format!("role {name} already exists")))
            }
            other => Ok(other?),
        }
    }

    pub async fn list_roles(&self) -> Result<Vec<RoleRecord>, AdminError> {
        Ok(self.store.list_roles().await?)
    }

    pub async fn delete_role(&self, name: &str, force: bool) -> Result<i64, AdminError> {
        let event = self
            .event("role.delete", name)
            .details(json!({ "force": force }));
        match self.store.delete_role(name, force, &event).await {
            Err(StoreError::NotFound(_)) => {
                Err(AdminError::NotFound(format!("role {name} does not exist")))
            }
            Err(StoreError::Conflict(_)) => {
                let members = self.store.count_role_members(name).await?;
                Err(AdminError::Conflict(format!(
                    "role {name} is assigned to {members} user(s); revoke it first or pass --force"
                )))
            }
            other => Ok(other?),
        }
    }
}
