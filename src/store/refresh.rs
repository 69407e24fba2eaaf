//! Refresh tokens and their families: the records, and the statements both backends share to
//! start, look up, revoke and list families. Rotation is in [`super::rotation`].

use serde::Serialize;
use sqlx::FromRow;

/// A login session: the chain of refresh tokens rotated from one grant.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct FamilyRecord {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

pub struct NewFamily {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub token_hash: Vec<u8>,
    pub idle_expires_at: i64,
    /// The hash the password was just verified against: the family is created only if the
    /// user still has it and is enabled, so a login racing a password change or a disable
    /// cannot outlive it.
    pub verified_password_hash: String,
    /// The login session it was started in (authorization code flow), which ending ends it.
    pub session_id: Option<String>,
}

/// What introspection and revocation need to know about a refresh token.
#[derive(Debug, Clone, FromRow)]
pub struct RefreshLookup {
    pub family_id: String,
    pub user_id: String,
    pub username: String,
    pub client_id: String,
    pub scope: String,
    pub issued_at: i64,
    pub idle_expires_at: i64,
    pub rotated_at: Option<i64>,
    pub family_expires_at: i64,
    pub revoked_at: Option<i64>,
    /// 1 when the owner is disabled.
    pub disabled: i64,
}

impl RefreshLookup {
    pub fn user_disabled(&self) -> bool {
        self.disabled != 0
    }
}

/// A family with its owner's listing details, for `tessera token list`.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct FamilySummary {
    pub family_id: String,
    pub client_id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
}

pub(super) const LOOKUP: &str = "SELECT t.family_id, f.user_id, u.username, f.client_id, f.scope, t.issued_at, \
     t.idle_expires_at, t.rotated_at, f.expires_at AS family_expires_at, f.revoked_at, u.disabled \
     FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
     JOIN users u ON u.id = f.user_id WHERE t.token_hash = $1";

/// The family and token statements shared by both backends. Each backend supplies
/// `CHECK_USER_UNCHANGED` (how it reads the user row a login is about to start a family for).
macro_rules! refresh_statements {
    () => {
        async fn insert_token(
            conn: &mut Conn,
            hash: &[u8],
            family_id: &str,
            issued_at: i64,
            idle_expires_at: i64,
        ) -> Result<(), sqlx::Error> {
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(hash.to_vec())
            .bind(family_id)
            .bind(issued_at)
            .bind(idle_expires_at)
            .execute(&mut *conn)
            .await?;
            Ok(())
        }

        async fn revoke_family_in(
            conn: &mut Conn,
            family_id: &str,
            now: i64,
            reason: &str,
        ) -> Result<bool, sqlx::Error> {
            Ok(sqlx::query(
                "UPDATE refresh_families SET revoked_at = $1, revoked_reason = $2 \
                 WHERE id = $3 AND revoked_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(family_id)
            .execute(&mut *conn)
            .await?
            .rows_affected()
                > 0)
        }

        /// Starts a family with its first token inside `conn`'s transaction. Returns `false`,
        /// writing nothing, when the user changed password or was disabled or deleted since
        /// the password was verified: the user row is read as `CHECK_USER_UNCHANGED` says, so
        /// that a concurrent password change or disable either commits first (and this sees
        /// it) or waits for this login to commit (and then revokes the family it created).
        async fn create_family_in(conn: &mut Conn, family: &NewFamily) -> Result<bool, sqlx::Error> {
            let unchanged = sqlx::query(CHECK_USER_UNCHANGED)
                .bind(&family.user_id)
                .bind(&family.verified_password_hash)
                .fetch_optional(&mut *conn)
                .await?
                .is_some();
            if !unchanged {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at, \
                 session_id) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&family.id)
            .bind(&family.user_id)
            .bind(&family.client_id)
            .bind(&family.scope)
            .bind(family.created_at)
            .bind(family.expires_at)
            .bind(family.session_id.as_deref())
            .execute(&mut *conn)
            .await?;
            Self::insert_token(
                conn,
                &family.token_hash,
                &family.id,
                family.created_at,
                family.idle_expires_at,
            )
            .await?;
            Ok(true)
        }

        /// Starts a family with its first token, recording `events` in the same transaction;
        /// `false`, changing nothing, as [`create_family_in`](Self::create_family_in) says.
        async fn create_family_in_transaction(
            &self,
            family: &NewFamily,
            events: &[AuditEvent],
        ) -> Result<bool, StoreError> {
            let mut tx = self.begin_write().await?;
            if !Self::create_family_in(&mut tx, family).await? {
                return Ok(false);
            }
            Self::insert_audit(&mut tx, events).await?;
            tx.commit().await?;
            Ok(true)
        }

        pub(super) async fn find_refresh_token(
            &self,
            hash: &[u8],
        ) -> Result<Option<RefreshLookup>, StoreError> {
            Ok(sqlx::query_as::<_, RefreshLookup>(LOOKUP)
                .bind(hash.to_vec())
                .fetch_optional(&self.pool)
                .await?)
        }

        /// Revokes one family; `false` if it was already revoked or does not exist.
        pub(super) async fn revoke_family(
            &self,
            family_id: &str,
            now: i64,
            reason: &str,
            events: &[AuditEvent],
        ) -> Result<bool, StoreError> {
            let mut tx = self.begin_write().await?;
            let revoked = Self::revoke_family_in(&mut tx, family_id, now, reason).await?;
            if revoked {
                Self::insert_audit(&mut tx, events).await?;
            }
            tx.commit().await?;
            Ok(revoked)
        }

        /// Revokes every live family of a user (optionally only with one client) or of a client.
        pub(super) async fn revoke_families(
            &self,
            user_id: Option<&str>,
            client_id: Option<&str>,
            now: i64,
            reason: &str,
            event: &AuditEvent,
        ) -> Result<u64, StoreError> {
            let mut tx = self.begin_write().await?;
            let revoked = sqlx::query(
                "UPDATE refresh_families SET revoked_at = $1, revoked_reason = $2 \
                 WHERE revoked_at IS NULL AND ($3 IS NULL OR user_id = $3) AND ($4 IS NULL OR client_id = $4)",
            )
            .bind(now)
            .bind(reason)
            .bind(user_id)
            .bind(client_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            let mut event = event.clone();
            event.details = serde_json::json!({ "families_revoked": revoked, "reason": reason });
            Self::insert_audit(&mut tx, std::slice::from_ref(&event)).await?;
            tx.commit().await?;
            Ok(revoked)
        }

        /// Live families of a user, newest first, one page (the cursor is a family id).
        pub(super) async fn list_families(
            &self,
            user_id: &str,
            now: i64,
            page: &Page,
        ) -> Result<Vec<FamilySummary>, StoreError> {
            Ok(sqlx::query_as::<_, FamilySummary>(
                "SELECT f.id AS family_id, f.client_id, f.created_at, MAX(t.issued_at) AS last_used_at, \
                 f.expires_at FROM refresh_families f JOIN refresh_tokens t ON t.family_id = f.id \
                 WHERE f.user_id = $1 AND f.revoked_at IS NULL AND f.expires_at > $2 \
                   AND ($3 IS NULL OR f.created_at < (SELECT created_at FROM refresh_families WHERE id = $3) \
                     OR (f.created_at = (SELECT created_at FROM refresh_families WHERE id = $3) \
                         AND f.id < $3)) \
                 GROUP BY f.id, f.client_id, f.created_at, f.expires_at \
                 HAVING MAX(CASE WHEN t.rotated_at IS NULL THEN t.idle_expires_at END) > $2 \
                 ORDER BY f.created_at DESC, f.id DESC LIMIT $4",
            )
            .bind(user_id)
            .bind(now)
            .bind(page.after.as_deref())
            .bind(page.limit)
            .fetch_all(&self.pool)
            .await?)
        }
    };
}
pub(super) use refresh_statements;
