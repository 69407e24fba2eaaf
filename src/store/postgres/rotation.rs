//! A rotation and a login's new family, each in one round trip and one commit. Data-modifying
//! CTEs all run or none do: when the claim (or the user check) matches nothing, the statement
//! changes nothing and returns no row. Concurrent rotations share one such statement
//! ([`super::rotation_batch`]); a rotation runs one of its own when the batcher is gone, and a
//! rotation whose answer was lost is settled by the shared multi-statement path, behind a
//! row lock ([`PgStore::begin_settle`]).

use super::super::rotation::{claimable, family_owner_columns};
use super::rotation_batch::RotationItem;
use super::{Db, PgStore};
use crate::store::prelude::*;

/// The user row a login starts a family for, read under a share lock: a password change or
/// disable that races the login waits for it to commit, then revokes what it created.
pub(super) const CHECK_USER_UNCHANGED: &str =
    "SELECT id FROM users WHERE id = $1 AND disabled = 0 AND password_hash = $2 FOR SHARE";

/// One rotation: claims the presented token with [`claimable!`], inserts its successor and
/// the audit row, and returns the family and its owner with the roles joined by spaces.
const ROTATE_IN_ONE_STATEMENT: &str = concat!(
    "WITH claimed AS ( \
         UPDATE refresh_tokens AS t SET rotated_at = $1, idle_expires_at = $10 \
         WHERE t.token_hash = $2 AND ",
    claimable!("t", "$1", "$3"),
    " RETURNING t.family_id \
     ), fam AS ( \
         SELECT ",
    family_owner_columns!(),
    ", u.username_normalized \
         FROM claimed c JOIN refresh_families f ON f.id = c.family_id \
         JOIN users u ON u.id = f.user_id \
     ), successor AS ( \
         INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at) \
         SELECT $4, id, $1, LEAST($5, expires_at) FROM fam \
     ), logged AS ( \
         INSERT INTO audit_log (at, actor, action, target, outcome, username, client_id, details) \
         SELECT $1, $6, $7, id, $8, username_normalized, $3, $9 FROM fam \
     ) \
     SELECT id, user_id, client_id, scope, created_at, expires_at, username, password_hash, \
            disabled, user_created_at, user_updated_at, password_changed_at, email, email_verified, \
            display_name, \
            (SELECT string_agg(r.role_name, ' ' ORDER BY r.role_name) FROM user_roles r \
             WHERE r.user_id = fam.user_id) AS roles \
     FROM fam"
);

impl PgStore {
    /// One statement, shared with concurrent rotations when the batcher runs. Narrowing the
    /// scope needs the family's scope before deciding, so it takes the multi-statement path.
    pub(super) async fn claim_rotation(
        &self,
        req: &RotationRequest,
    ) -> Result<Option<Rotation>, StoreError> {
        if req.narrowing.is_some() {
            let tx = self.begin_write().await?;
            return self.claim_in(tx, req, None).await;
        }
        let event = &req.success_event;
        let item = RotationItem {
            now: req.now,
            hash: hex::encode(&req.presented_hash),
            client_id: req.client_id.clone(),
            next_hash: hex::encode(&req.new_hash),
            next_idle: req.new_idle_expires_at,
            forget: req.forget_rotated_at,
            actor: event.actor.clone(),
            action: event.action,
            outcome: event.outcome,
            details: event.details.to_string(),
        };
        let row = match self.rotations.ask(item).await {
            Ok(answer) => answer?,
            Err(_) => self.rotate_alone(req).await?,
        };
        Ok(row.map(|row| {
            let roles = split_list(row.roles.as_deref().unwrap_or(""));
            row.into_rotation(roles)
        }))
    }

    /// [`ROTATE_IN_ONE_STATEMENT`] for one request, when rotations are not batched.
    async fn rotate_alone(
        &self,
        req: &RotationRequest,
    ) -> Result<Option<FamilyUserRow>, StoreError> {
        let event = &req.success_event;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::before_sending)?;
        Ok(sqlx::query_as::<_, FamilyUserRow>(ROTATE_IN_ONE_STATEMENT)
            .bind(req.now)
            .bind(req.presented_hash.clone())
            .bind(&req.client_id)
            .bind(req.new_hash.clone())
            .bind(req.new_idle_expires_at)
            .bind(event.actor.clone())
            .bind(event.action)
            .bind(event.outcome)
            .bind(event.details.to_string())
            .bind(req.forget_rotated_at)
            .fetch_optional(&mut *conn)
            .await?)
    }

    /// Read committed whatever the server's default, so that the look after the wait sees what
    /// a cut-off statement committed; then the presented token's row locked, waiting up to the
    /// acquire timeout: behind the cut-off statement if it holds the row, and ahead of it
    /// otherwise, in which case it finds the token rotated and changes nothing.
    pub(super) async fn begin_settle(
        &self,
        presented_hash: &[u8],
    ) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
            .await
            .map_err(StoreError::before_sending)?;
        // At least 1 ms: 0 would mean no limit.
        let wait = self.pool.options().get_acquire_timeout().as_millis().max(1);
        sqlx::query("SELECT set_config('lock_timeout', $1, true)")
            .bind(format!("{wait}ms"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE")
            .bind(presented_hash.to_vec())
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// One statement when the events fit one audit insert; a transaction otherwise.
    pub(in crate::store) async fn create_family(
        &self,
        family: &NewFamily,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        if events.len() > MAX_BATCH {
            return self.create_family_in_transaction(family, events).await;
        }
        let sql = format!(
            "WITH checked AS ({CHECK_USER_UNCHANGED}), family AS ( \
                 INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at) \
                 SELECT $3, id, $4, $5, $6, $7 FROM checked RETURNING id \
             ), first_token AS ( \
                 INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at) \
                 SELECT $8, id, $6, $9 FROM family \
             ), logged AS ( \
                 INSERT INTO audit_log ({COLUMNS}) SELECT * FROM (VALUES {values}) AS v ({COLUMNS}) \
                 WHERE EXISTS (SELECT 1 FROM family) \
             ) \
             SELECT COUNT(*) FROM family",
            values = values(10, events.len()),
        );
        // Only numbered placeholders are generated; every value is bound.
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&family.user_id)
            .bind(&family.verified_password_hash)
            .bind(&family.id)
            .bind(&family.client_id)
            .bind(&family.scope)
            .bind(family.created_at)
            .bind(family.expires_at)
            .bind(family.token_hash.clone())
            .bind(family.idle_expires_at);
        let row = Self::bind_audit(query, events)
            .fetch_one(&self.pool)
            .await?;
        Ok(sqlx::Row::try_get::<i64, _>(&row, 0)? == 1)
    }
}
