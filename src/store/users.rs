//! Users and their roles.

use serde::Serialize;
use sqlx::FromRow;

#[derive(Clone, Serialize)]
pub struct UserRecord {
    pub id: String,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub disabled: bool,
    pub roles: Vec<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub password_changed_at: i64,
    #[serde(flatten)]
    pub profile: UserProfile,
}

/// What OpenID Connect may tell a client about a user: the `email` scope's claims and the
/// `profile` scope's `name`. Each is optional. Personal data: its `Debug` says only what is set.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserProfile {
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
}

impl std::fmt::Debug for UserProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserProfile")
            .field("email", &self.email.as_ref().map(|_| "<set>"))
            .field("email_verified", &self.email_verified)
            .field("name", &self.name.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl UserProfile {
    /// From the columns as stored (`email_verified` 0 or 1).
    pub(super) fn from_columns(
        email: Option<String>,
        email_verified: i64,
        name: Option<String>,
    ) -> Self {
        Self {
            email,
            email_verified: email_verified != 0,
            name,
        }
    }
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("disabled", &self.disabled)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

pub struct NewUser {
    pub id: String,
    pub username: String,
    pub username_normalized: String,
    pub password_hash: String,
    pub disabled: bool,
    pub roles: Vec<String>,
    pub profile: UserProfile,
    pub now: i64,
}

#[derive(FromRow)]
pub(super) struct UserRoleRow {
    id: String,
    username: String,
    password_hash: String,
    disabled: i64,
    created_at: i64,
    updated_at: i64,
    password_changed_at: i64,
    email: Option<String>,
    email_verified: i64,
    display_name: Option<String>,
    role_name: Option<String>,
}

/// A user joined with their roles; callers append the WHERE / ORDER BY clause.
macro_rules! select_user_roles {
    ($tail:literal) => {
        concat!(
            "SELECT u.id, u.username, u.password_hash, u.disabled, u.created_at, u.updated_at, \
             u.password_changed_at, u.email, u.email_verified, u.display_name, r.role_name \
             FROM users u LEFT JOIN user_roles r ON r.user_id = u.id",
            $tail
        )
    };
}
pub(super) use select_user_roles;

/// Folds joined (user, role) rows, ordered by user, into records.
pub(super) fn fold_users(rows: Vec<UserRoleRow>) -> Vec<UserRecord> {
    let mut users: Vec<UserRecord> = Vec::new();
    for row in rows {
        if users.last().is_none_or(|u| u.id != row.id) {
            users.push(UserRecord {
                id: row.id,
                username: row.username,
                password_hash: row.password_hash,
                disabled: row.disabled != 0,
                roles: Vec::new(),
                created_at: row.created_at,
                updated_at: row.updated_at,
                password_changed_at: row.password_changed_at,
                profile: UserProfile::from_columns(row.email, row.email_verified, row.display_name),
            });
        }
        if let (Some(role), Some(user)) = (row.role_name, users.last_mut()) {
            user.roles.push(role);
        }
    }
    for user in &mut users {
        user.roles.sort();
    }
    users
}

macro_rules! user_statements {
    () => {
    async fn role_exists(conn: &mut Conn, role: &str) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query("SELECT 1 FROM roles WHERE name = $1")
            .bind(role)
            .fetch_optional(&mut *conn)
            .await?
            .is_some())
    }

    /// Ends every live refresh family of a user (disable, password change).
    async fn revoke_user_families(
        conn: &mut Conn,
        user_id: &str,
        now: i64,
        reason: &str,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "UPDATE refresh_families SET revoked_at = $1, revoked_reason = $2 \
             WHERE user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(user_id)
        .execute(&mut *conn)
        .await?
        .rows_affected())
    }

        pub(super) async fn create_user(&self, user: &NewUser, event: &AuditEvent) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            for role in &user.roles {
                if !Self::role_exists(&mut tx, role).await? {
                    return Err(StoreError::NotFound("role"));
                }
            }
            sqlx::query(
                "INSERT INTO users (id, username, username_normalized, password_hash, disabled, \
                 created_at, updated_at, password_changed_at, email, email_verified, display_name) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $6, $7, $8, $9)",
            )
            .bind(&user.id)
            .bind(&user.username)
            .bind(&user.username_normalized)
            .bind(&user.password_hash)
            .bind(i64::from(user.disabled))
            .bind(user.now)
            .bind(user.profile.email.clone())
            .bind(i64::from(user.profile.email_verified))
            .bind(user.profile.name.clone())
            .execute(&mut *tx)
            .await
            .map_err(|e| conflict_or(e, "user"))?;
            for role in &user.roles {
                sqlx::query("INSERT INTO user_roles (user_id, role_name) VALUES ($1, $2)")
                    .bind(&user.id)
                    .bind(role)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| conflict_or(e, "role assignment"))?;
            }
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Users in username order, one page; `prefix` (normalized) keeps those whose username
        /// starts with it. The page is picked on the unique username index alone, then joined.
        pub(super) async fn list_users(
            &self,
            page: &Page,
            prefix: Option<&str>,
        ) -> Result<Vec<UserRecord>, StoreError> {
            let prefix = prefix.unwrap_or("");
            // `>= prefix` lets the index start the scan there; LIKE decides.
            let rows = sqlx::query_as::<_, UserRoleRow>(select_user_roles!(
                " WHERE u.id IN (SELECT id FROM users \
                   WHERE username_normalized > $1 AND username_normalized >= $2 \
                     AND username_normalized LIKE $3 ESCAPE '\\' \
                   ORDER BY username_normalized LIMIT $4) \
                 ORDER BY u.username_normalized, u.id"
            ))
            .bind(page.after.as_deref().unwrap_or(""))
            .bind(prefix)
            .bind(like_prefix(prefix))
            .bind(page.limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(fold_users(rows))
        }

        /// Looks a user up by normalized username.
        pub(super) async fn find_user(
            &self,
            username_normalized: &str,
        ) -> Result<Option<UserRecord>, StoreError> {
            let rows = sqlx::query_as::<_, UserRoleRow>(select_user_roles!(
                " WHERE u.username_normalized = $1"
            ))
            .bind(username_normalized)
            .fetch_all(&self.pool)
            .await?;
            Ok(fold_users(rows).into_iter().next())
        }

        pub(super) async fn find_user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
            let rows = sqlx::query_as::<_, UserRoleRow>(select_user_roles!(" WHERE u.id = $1"))
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
            Ok(fold_users(rows).into_iter().next())
        }

        /// Sets a new password and ends the user's refresh families, atomically.
        pub(super) async fn set_password(
            &self,
            user_id: &str,
            hash: &str,
            now: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE users SET password_hash = $1, password_changed_at = $2, updated_at = $2 WHERE id = $3",
            )
            .bind(hash)
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("user"));
            }
            Self::revoke_user_families(&mut tx, user_id, now, "password_changed").await?;
            Self::end_sessions_in(&mut tx, SessionTarget::User(user_id), now, "password_changed")
                .await?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Replaces the user's profile (email, whether it is verified, name).
        pub(super) async fn set_user_profile(
            &self,
            user_id: &str,
            profile: &UserProfile,
            now: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let updated = sqlx::query(
                "UPDATE users SET email = $1, email_verified = $2, display_name = $3, \
                 updated_at = $4 WHERE id = $5",
            )
            .bind(profile.email.clone())
            .bind(i64::from(profile.email_verified))
            .bind(profile.name.clone())
            .bind(now)
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Self::commit_change(tx, updated, "user", event).await
        }

        /// Replaces a hash made with outdated parameters, only if it is still the one verified.
        pub(super) async fn upgrade_password_hash(
            &self,
            user_id: &str,
            old_hash: &str,
            new_hash: &str,
        ) -> Result<(), StoreError> {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2 AND password_hash = $3")
                .bind(new_hash)
                .bind(user_id)
                .bind(old_hash)
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        /// Enables or disables; disabling ends the user's refresh families in the same transaction.
        pub(super) async fn set_user_disabled(
            &self,
            user_id: &str,
            disabled: bool,
            now: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let updated = sqlx::query("UPDATE users SET disabled = $1, updated_at = $2 WHERE id = $3")
                .bind(i64::from(disabled))
                .bind(now)
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if updated == 0 {
                return Err(StoreError::NotFound("user"));
            }
            if disabled {
                Self::revoke_user_families(&mut tx, user_id, now, "user_disabled").await?;
                Self::end_sessions_in(&mut tx, SessionTarget::User(user_id), now, "user_disabled")
                    .await?;
            }
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Deletes a user; their roles and refresh families go with them (ON DELETE CASCADE).
        pub(super) async fn delete_user(&self, user_id: &str, event: &AuditEvent) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            Self::commit_change(tx, deleted, "user", event).await
        }

        pub(super) async fn grant_role(
            &self,
            user_id: &str,
            role: &str,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            if !Self::role_exists(&mut tx, role).await? {
                return Err(StoreError::NotFound("role"));
            }
            sqlx::query("INSERT INTO user_roles (user_id, role_name) VALUES ($1, $2)")
                .bind(user_id)
                .bind(role)
                .execute(&mut *tx)
                .await
                .map_err(|e| conflict_or(e, "role assignment"))?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        pub(super) async fn revoke_role(
            &self,
            user_id: &str,
            role: &str,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            let deleted = sqlx::query("DELETE FROM user_roles WHERE user_id = $1 AND role_name = $2")
                .bind(user_id)
                .bind(role)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            Self::commit_change(tx, deleted, "role assignment", event).await
        }
    };
}
pub(super) use user_statements;
