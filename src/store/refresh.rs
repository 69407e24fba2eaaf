//! Refresh tokens and their families. Rotation is a compare-and-set in SQL: the presented
//! token is marked rotated only if nobody marked it first, so two concurrent uses of one token
//! can never both succeed (RFC 9700 §4.14.2).

use serde::Serialize;
use sqlx::{AnyConnection, FromRow};

use super::audit::{self, AuditEvent};
use super::rotation_batch::RotationItem;
use super::users::UserRecord;
use super::{Store, StoreError};

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
}

#[derive(Clone)]
pub struct RotationRequest {
    pub presented_hash: Vec<u8>,
    pub client_id: String,
    pub now: i64,
    /// A token rotated at or after this time is inside the reuse grace window.
    pub grace_cutoff: i64,
    pub new_hash: Vec<u8>,
    pub new_idle_expires_at: i64,
    /// The presented token, once rotated, is kept for reuse detection until then (its idle
    /// expiry, meaningless for a rotated token, becomes this) and collected after.
    pub forget_rotated_at: i64,
    /// A narrower scope asked for; rotation is undone when it is not within the family's.
    pub requested_scope: Option<Vec<String>>,
    /// Recorded on success; the store fills in username and target (the family id).
    pub success_event: AuditEvent,
    /// Recorded on reuse, with a `refresh.family_revoked` row beside it.
    pub reuse_event: AuditEvent,
}

#[derive(Debug)]
pub enum Rotation {
    Rotated {
        family: FamilyRecord,
        user: Box<UserRecord>,
    },
    /// The requested scope exceeds the family's; nothing was changed.
    ScopeNotGranted,
    NotFound,
    /// Issued to another client: stolen, or leaked between clients (RFC 9700 §4.14.2).
    WrongClient {
        username: String,
        family_id: String,
        owner_client: String,
    },
    Expired {
        username: String,
    },
    Revoked {
        username: String,
    },
    UserDisabled {
        username: String,
    },
    /// Presented again inside the grace window: refused, family left alone.
    ReusedWithinGrace {
        username: String,
    },
    /// Presented again after the grace window: the family is now revoked.
    Reused {
        username: String,
        family_id: String,
    },
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

#[derive(FromRow)]
pub(super) struct FamilyUserRow {
    id: String,
    user_id: String,
    client_id: String,
    scope: String,
    created_at: i64,
    expires_at: i64,
    username: String,
    password_hash: String,
    disabled: i64,
    user_created_at: i64,
    user_updated_at: i64,
    password_changed_at: i64,
    /// One role per row (multi-statement path) or all of them joined by spaces (one-statement).
    roles: Option<String>,
}

impl FamilyUserRow {
    fn into_rotation(self, mut roles: Vec<String>) -> Rotation {
        roles.sort();
        Rotation::Rotated {
            family: FamilyRecord {
                id: self.id,
                user_id: self.user_id.clone(),
                client_id: self.client_id,
                scope: self.scope,
                created_at: self.created_at,
                expires_at: self.expires_at,
                revoked_at: None,
            },
            user: Box::new(UserRecord {
                id: self.user_id,
                username: self.username,
                password_hash: self.password_hash,
                disabled: self.disabled != 0,
                roles,
                created_at: self.user_created_at,
                updated_at: self.user_updated_at,
                password_changed_at: self.password_changed_at,
            }),
        }
    }
}

/// A family with its owner, one row per role (none when the user has no role), filtered by
/// the literal given.
macro_rules! family_and_owner {
    ($rest:literal) => {
        concat!(
            "SELECT f.id, f.user_id, f.client_id, f.scope, f.created_at, f.expires_at, \
             u.username, u.password_hash, u.disabled, u.created_at AS user_created_at, \
             u.updated_at AS user_updated_at, u.password_changed_at, r.role_name AS roles \
             FROM refresh_families f JOIN users u ON u.id = f.user_id \
             LEFT JOIN user_roles r ON r.user_id = u.id ",
            $rest
        )
    };
}

/// The rows of [`family_and_owner!`] as one rotation; `None` when there are none.
fn into_rotation(rows: Vec<FamilyUserRow>) -> Option<Rotation> {
    let roles: Vec<String> = rows.iter().filter_map(|r| r.roles.clone()).collect();
    rows.into_iter()
        .next()
        .map(|first| first.into_rotation(roles))
}

/// Rotation in one round trip and one commit (Postgres): claims the presented token with the
/// same compare-and-set as the multi-statement path, inserts its successor and the audit row,
/// and returns the family and its owner. Data-modifying CTEs all run or none do; when the
/// claim matches nothing the statement changes nothing and returns no row.
const ROTATE_IN_ONE_STATEMENT: &str = "\
WITH claimed AS ( \
    UPDATE refresh_tokens SET rotated_at = $1, idle_expires_at = $10 \
    WHERE token_hash = $2 AND rotated_at IS NULL AND idle_expires_at > $1 \
      AND family_id IN (SELECT f.id FROM refresh_families f JOIN users u ON u.id = f.user_id \
          WHERE f.revoked_at IS NULL AND f.expires_at > $1 AND f.client_id = $3 \
            AND u.disabled = 0) \
    RETURNING family_id \
), fam AS ( \
    SELECT f.id, f.user_id, f.client_id, f.scope, f.created_at, f.expires_at, u.username, \
           u.username_normalized, u.password_hash, u.disabled, \
           u.created_at AS user_created_at, u.updated_at AS user_updated_at, \
           u.password_changed_at \
    FROM claimed c JOIN refresh_families f ON f.id = c.family_id JOIN users u ON u.id = f.user_id \
), successor AS ( \
    INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at) \
    SELECT $4, id, $1, LEAST($5, expires_at) FROM fam \
), logged AS ( \
    INSERT INTO audit_log (at, actor, action, target, outcome, username, client_id, details) \
    SELECT $1, $6, $7, id, $8, username_normalized, $3, $9 FROM fam \
) \
SELECT id, user_id, client_id, scope, created_at, expires_at, username, password_hash, \
       disabled, user_created_at, user_updated_at, password_changed_at, \
       (SELECT string_agg(r.role_name, ' ' ORDER BY r.role_name) FROM user_roles r \
        WHERE r.user_id = fam.user_id) AS roles \
FROM fam";

/// A family with its owner's listing details, for `tessera token list`.
#[derive(Debug, Clone, Serialize, FromRow)]
pub struct FamilySummary {
    pub family_id: String,
    pub client_id: String,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
}

const LOOKUP: &str = "SELECT t.family_id, f.user_id, u.username, f.client_id, f.scope, t.issued_at, \
     t.idle_expires_at, t.rotated_at, f.expires_at AS family_expires_at, f.revoked_at, u.disabled \
     FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id \
     JOIN users u ON u.id = f.user_id WHERE t.token_hash = $1";

async fn insert_token(
    conn: &mut AnyConnection,
    hash: &[u8],
    family_id: &str,
    issued_at: i64,
    idle_expires_at: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(hash.to_vec())
    .bind(family_id)
    .bind(issued_at)
    .bind(idle_expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn revoke_family_in(
    conn: &mut AnyConnection,
    family_id: &str,
    now: i64,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE refresh_families SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(reason)
    .bind(family_id)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        > 0)
}

impl Store {
    /// Starts a family with its first token, recording `events` in the same transaction.
    /// Returns `false`, changing nothing, when the user changed password or was disabled or
    /// deleted since the password was verified.
    pub async fn create_family(
        &self,
        family: &NewFamily,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        if self.backend == super::Backend::Postgres && events.len() <= audit::MAX_BATCH {
            return self.create_family_in_one_statement(family, events).await;
        }
        let mut tx = self.begin_write().await?;
        // The user row is read under a share lock on Postgres: a concurrent password change or
        // disable either commits first (and this sees it) or waits for this login to commit
        // (and then revokes the family it created). SQLite's BEGIN IMMEDIATE already
        // serializes the two.
        let check = match self.backend {
            super::Backend::Postgres => {
                "SELECT 1 FROM users WHERE id = $1 AND disabled = 0 AND password_hash = $2 FOR SHARE"
            }
            super::Backend::Sqlite => {
                "SELECT 1 FROM users WHERE id = $1 AND disabled = 0 AND password_hash = $2"
            }
        };
        let unchanged = sqlx::query(check)
            .bind(&family.user_id)
            .bind(&family.verified_password_hash)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if !unchanged {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&family.id)
        .bind(&family.user_id)
        .bind(&family.client_id)
        .bind(&family.scope)
        .bind(family.created_at)
        .bind(family.expires_at)
        .execute(&mut *tx)
        .await?;
        insert_token(
            &mut tx,
            &family.token_hash,
            &family.id,
            family.created_at,
            family.idle_expires_at,
        )
        .await?;
        audit::insert(&mut tx, events).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// [`Store::create_family`] in one round trip and one commit (Postgres): the same share
    /// lock on the user row, then the family, its first token and the audit rows, each only
    /// if the user check passed.
    async fn create_family_in_one_statement(
        &self,
        family: &NewFamily,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "WITH checked AS ( \
                 SELECT id FROM users WHERE id = $1 AND disabled = 0 AND password_hash = $2 \
                 FOR SHARE \
             ), family AS ( \
                 INSERT INTO refresh_families (id, user_id, client_id, scope, created_at, expires_at) \
                 SELECT $3, id, $4, $5, $6, $7 FROM checked RETURNING id \
             ), first_token AS ( \
                 INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at) \
                 SELECT $8, id, $6, $9 FROM family \
             ), logged AS ( \
                 INSERT INTO audit_log ({columns}) SELECT * FROM (VALUES {values}) AS v ({columns}) \
                 WHERE EXISTS (SELECT 1 FROM family) \
             ) \
             SELECT COUNT(*) FROM family",
            columns = audit::COLUMNS,
            values = audit::values(10, events.len()),
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
        let row = audit::bind(query, events).fetch_one(&self.pool).await?;
        Ok(sqlx::Row::try_get::<i64, _>(&row, 0)? == 1)
    }

    /// Rotates a refresh token: marks the presented one used and issues its successor, in one
    /// transaction. Reuse of a rotated token outside the grace window revokes the family.
    ///
    /// When the answer is lost after a statement was sent (the connection cut before or after
    /// the commit), the rotation is settled again: see [`Store::settle_rotation`]. Failures
    /// before anything was sent ([`StoreError::Unreachable`]) cannot have changed anything and
    /// are answered as they are.
    pub async fn rotate_refresh_token(&self, req: RotationRequest) -> Result<Rotation, StoreError> {
        let again = req.clone();
        match self.rotate(req).await {
            Err(StoreError::Unavailable(lost)) => {
                let mut settled = self.settle_rotation(again.clone()).await;
                // The settling's own answer can be lost too, after its commit: settling again
                // finds what it did.
                if matches!(settled, Err(StoreError::Unavailable(_))) {
                    settled = self.settle_rotation(again).await;
                }
                match settled {
                    Ok((outcome, how)) => {
                        metrics::counter!("tessera_refresh_rotations_recovered_total", "how" => how)
                            .increment(1);
                        tracing::warn!(error = %lost, how, "a refresh rotation's answer was lost; recovered");
                        Ok(outcome)
                    }
                    Err(e) => {
                        metrics::counter!("tessera_refresh_rotations_recovered_total", "how" => "failed")
                            .increment(1);
                        tracing::warn!(error = %lost, settling = %e, "a refresh rotation's answer was lost and it could not be settled");
                        Err(StoreError::Unavailable(lost))
                    }
                }
            }
            outcome => outcome,
        }
    }

    /// Settles a rotation whose answer was lost: the rotation it committed (`found`), or, when
    /// it did not commit, the rotation done now (`redone`).
    ///
    /// Only this request knows the successor's hash, so finding the successor means this
    /// request's rotation committed. A statement cut off from its client may still be running
    /// (waiting for a row lock or the WAL flush) and commit after a look, so the presented
    /// token's row is locked first, waiting up to the acquire timeout: behind the cut-off
    /// statement if it holds the row, and ahead of it otherwise, in which case it finds the
    /// token rotated and changes nothing.
    async fn settle_rotation(
        &self,
        req: RotationRequest,
    ) -> Result<(Rotation, &'static str), StoreError> {
        let mut tx = match self.backend {
            // SQLite's write transaction already excludes every other writer.
            super::Backend::Sqlite => self.begin_write().await?,
            super::Backend::Postgres => {
                // Read committed whatever the server's default, so that the look after the
                // wait sees what the cut-off statement committed.
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
                    .bind(req.presented_hash.clone())
                    .execute(&mut *tx)
                    .await?;
                tx
            }
        };
        // A statement of its own, so that its snapshot is taken after the wait.
        let rows = sqlx::query_as::<_, FamilyUserRow>(family_and_owner!(
            "JOIN refresh_tokens n ON n.family_id = f.id \
             JOIN refresh_tokens p ON p.family_id = f.id \
             WHERE n.token_hash = $1 AND n.rotated_at IS NULL AND p.token_hash = $2 \
               AND p.rotated_at IS NOT NULL AND f.client_id = $3 \
               AND f.revoked_at IS NULL AND u.disabled = 0"
        ))
        .bind(req.new_hash.clone())
        .bind(req.presented_hash.clone())
        .bind(&req.client_id)
        .fetch_all(&mut *tx)
        .await?;
        if let Some(rotation) = into_rotation(rows) {
            // Nothing to commit: the answer is known, whatever would become of a commit's.
            drop(tx);
            return Ok((rotation, "found"));
        }
        Ok((self.rotate_in(tx, req).await?, "redone"))
    }

    async fn rotate(&self, req: RotationRequest) -> Result<Rotation, StoreError> {
        // Narrowing the scope needs the family's scope before deciding, so it takes the
        // multi-statement path, as does SQLite (no data-modifying CTEs).
        if self.backend == super::Backend::Postgres && req.requested_scope.is_none() {
            return self.rotate_in_one_statement(req).await;
        }
        let tx = self.begin_write().await?;
        self.rotate_in(tx, req).await
    }

    /// The multi-statement rotation, in `tx`; commits it unless the rotation is undone.
    async fn rotate_in(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        req: RotationRequest,
    ) -> Result<Rotation, StoreError> {
        let claimed: Option<String> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET rotated_at = $1, idle_expires_at = $4 \
             WHERE token_hash = $2 AND rotated_at IS NULL AND idle_expires_at > $1 \
               AND family_id IN (SELECT f.id FROM refresh_families f JOIN users u ON u.id = f.user_id \
                   WHERE f.revoked_at IS NULL AND f.expires_at > $1 AND f.client_id = $3 \
                     AND u.disabled = 0) \
             RETURNING family_id",
        )
        .bind(req.now)
        .bind(req.presented_hash.clone())
        .bind(&req.client_id)
        .bind(req.forget_rotated_at)
        .fetch_optional(&mut *tx)
        .await?;

        let Some(family_id) = claimed else {
            let outcome = self.diagnose_failed_rotation(&mut tx, &req).await?;
            tx.commit().await?;
            return Ok(outcome);
        };

        let rows = sqlx::query_as::<_, FamilyUserRow>(family_and_owner!("WHERE f.id = $1"))
            .bind(&family_id)
            .fetch_all(&mut *tx)
            .await?;
        let roles: Vec<String> = rows.iter().filter_map(|r| r.roles.clone()).collect();
        let Some(first) = rows.into_iter().next() else {
            return Err(StoreError::NotFound("refresh family"));
        };
        if let Some(requested) = &req.requested_scope {
            let granted = super::split_list(&first.scope);
            if requested.iter().any(|s| !granted.contains(s)) {
                // Dropping the transaction rolls the rotation back: the token stays usable.
                return Ok(Rotation::ScopeNotGranted);
            }
        }
        let (family_id, family_expires_at, username) =
            (first.id.clone(), first.expires_at, first.username.clone());
        let idle_expires_at = req.new_idle_expires_at.min(family_expires_at);
        insert_token(&mut tx, &req.new_hash, &family_id, req.now, idle_expires_at).await?;

        let mut event = req.success_event;
        event.username = Some(username);
        event.target = family_id;
        audit::insert(&mut tx, std::slice::from_ref(&event)).await?;
        tx.commit().await?;
        Ok(first.into_rotation(roles))
    }

    async fn rotate_in_one_statement(&self, req: RotationRequest) -> Result<Rotation, StoreError> {
        let event = &req.success_event;
        let shared = match &self.rotations {
            Some(rotations) => rotations
                .ask(RotationItem {
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
                })
                .await
                .ok(),
            None => None,
        };
        let row = match shared {
            Some(answer) => answer?,
            None => self.rotate_alone(&req).await?,
        };
        let Some(row) = row else {
            let mut tx = self.begin_write().await?;
            let outcome = self.diagnose_failed_rotation(&mut tx, &req).await?;
            tx.commit().await?;
            return Ok(outcome);
        };
        let roles = super::split_list(row.roles.as_deref().unwrap_or(""));
        Ok(row.into_rotation(roles))
    }

    /// [`ROTATE_IN_ONE_STATEMENT`] for one request (Postgres, when rotations are not batched).
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

    async fn diagnose_failed_rotation(
        &self,
        tx: &mut AnyConnection,
        req: &RotationRequest,
    ) -> Result<Rotation, StoreError> {
        let Some(found) = sqlx::query_as::<_, RefreshLookup>(LOOKUP)
            .bind(req.presented_hash.clone())
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(Rotation::NotFound);
        };
        let username = found.username.clone();
        if found.client_id != req.client_id {
            return Ok(Rotation::WrongClient {
                username,
                family_id: found.family_id,
                owner_client: found.client_id,
            });
        }
        if found.revoked_at.is_some() {
            return Ok(Rotation::Revoked { username });
        }
        if let Some(rotated_at) = found.rotated_at {
            if rotated_at >= req.grace_cutoff {
                return Ok(Rotation::ReusedWithinGrace { username });
            }
            // Concurrent reuses all land here; only the one that revoked the family records it.
            if !revoke_family_in(tx, &found.family_id, req.now, "reuse_detected").await? {
                return Ok(Rotation::Revoked { username });
            }
            let mut reuse = req.reuse_event.clone();
            reuse.username = Some(username.clone());
            reuse.target = found.family_id.clone();
            let mut revoked = reuse.clone();
            revoked.action = "refresh.family_revoked";
            revoked.details = serde_json::json!({ "reason": "reuse_detected" });
            audit::insert(tx, &[reuse, revoked]).await?;
            return Ok(Rotation::Reused {
                username,
                family_id: found.family_id,
            });
        }
        if found.user_disabled() {
            return Ok(Rotation::UserDisabled { username });
        }
        Ok(Rotation::Expired { username })
    }

    pub async fn find_refresh_token(
        &self,
        hash: &[u8],
    ) -> Result<Option<RefreshLookup>, StoreError> {
        Ok(sqlx::query_as::<_, RefreshLookup>(LOOKUP)
            .bind(hash.to_vec())
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Revokes one family; `false` if it was already revoked or does not exist.
    pub async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
        reason: &str,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let revoked = revoke_family_in(&mut tx, family_id, now, reason).await?;
        if revoked {
            audit::insert(&mut tx, events).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    /// Revokes every live family of a user (optionally only with one client) or of a client.
    pub async fn revoke_families(
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
        audit::insert(&mut tx, std::slice::from_ref(&event)).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    /// Live families of a user, newest first, one page (the cursor is a family id).
    pub async fn list_families(
        &self,
        user_id: &str,
        now: i64,
        page: &super::Page,
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
}
