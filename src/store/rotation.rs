//! Refresh rotation: the claim predicate every rotation statement uses ([`claimable!`]), what a
//! rotation asks and answers, and the multi-statement rotation both backends share, with the
//! settling of a rotation whose answer was lost. The rules on a failed claim (grace, reuse,
//! theft) are `oauth::refresh_rules`'; Postgres's one-statement rotation is
//! `store::postgres::rotation`.

use sqlx::FromRow;

use super::audit::AuditEvent;
use super::refresh::FamilyRecord;
use super::refresh::RefreshLookup;
use super::users::{UserProfile, UserRecord};

/// Whether a family's scope (space-separated) allows what a rotation asks for.
pub type Narrowing = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// A rotation to attempt: claim the presented token for `client_id` and issue its successor.
/// Which refusal a failed claim deserves is `oauth`'s to decide, from the token as it stands.
#[derive(Clone)]
pub struct RotationRequest {
    pub presented_hash: Vec<u8>,
    pub client_id: String,
    pub now: i64,
    pub new_hash: Vec<u8>,
    pub new_idle_expires_at: i64,
    /// The presented token, once rotated, is kept for reuse detection until then (its idle
    /// expiry, meaningless for a rotated token, becomes this) and collected after.
    pub forget_rotated_at: i64,
    /// A narrower scope asked for, as oauth's rule for whether the family's scope allows it.
    /// Applied after the claim, inside the rotation's transaction, which is undone when the
    /// rule says no: the family's scope is only known once its row is read.
    pub narrowing: Option<Narrowing>,
    /// Recorded in the rotation's own statement or transaction, so that no rotation goes
    /// unaudited; the store fills in username and target (the family id), which only the
    /// claimed row knows.
    pub success_event: AuditEvent,
}

#[derive(Debug)]
pub enum Rotation {
    Rotated {
        family: FamilyRecord,
        user: Box<UserRecord>,
    },
    /// The family's scope does not allow the narrowing asked for; nothing was changed.
    ScopeNotGranted,
    /// Nothing changed: the token was unknown (`None`), or not claimable as it stands now
    /// (rotated, revoked, expired, another client's, its user disabled).
    NotClaimed(Option<RefreshLookup>),
}

#[derive(FromRow)]
pub(super) struct FamilyUserRow {
    pub(super) id: String,
    pub(super) user_id: String,
    pub(super) client_id: String,
    pub(super) scope: String,
    pub(super) created_at: i64,
    pub(super) expires_at: i64,
    pub(super) username: String,
    pub(super) password_hash: String,
    pub(super) disabled: i64,
    pub(super) user_created_at: i64,
    pub(super) user_updated_at: i64,
    pub(super) password_changed_at: i64,
    pub(super) email: Option<String>,
    pub(super) email_verified: i64,
    pub(super) display_name: Option<String>,
    /// One role per row (multi-statement path) or all of them joined by spaces (one-statement).
    pub(super) roles: Option<String>,
}

impl FamilyUserRow {
    pub(super) fn into_rotation(self, mut roles: Vec<String>) -> Rotation {
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
                profile: UserProfile::from_columns(
                    self.email,
                    self.email_verified,
                    self.display_name,
                ),
            }),
        }
    }
}

/// The columns of a family and its owner, as [`FamilyUserRow`] reads them (less `roles`), from
/// `refresh_families f JOIN users u`.
macro_rules! family_owner_columns {
    () => {
        "f.id, f.user_id, f.client_id, f.scope, f.created_at, f.expires_at, u.username, \
         u.password_hash, u.disabled, u.created_at AS user_created_at, \
         u.updated_at AS user_updated_at, u.password_changed_at, u.email, u.email_verified, \
         u.display_name"
    };
}
pub(super) use family_owner_columns;

/// Whether the token row `t` may be claimed for rotation at `now` by `client`: not rotated,
/// not idle-expired, and its family live, the client's, and its user enabled. Every rotation
/// statement claims with this predicate, in an `UPDATE` that marks the row rotated, so that two
/// uses of one token can never both succeed (RFC 9700 §4.14.2).
macro_rules! claimable {
    ($t:literal, $now:literal, $client:literal) => {
        concat!(
            $t,
            ".rotated_at IS NULL AND ",
            $t,
            ".idle_expires_at > ",
            $now,
            " AND EXISTS (SELECT 1 FROM refresh_families f JOIN users u ON u.id = f.user_id \
              WHERE f.id = ",
            $t,
            ".family_id AND f.revoked_at IS NULL AND f.expires_at > ",
            $now,
            " AND f.client_id = ",
            $client,
            " AND u.disabled = 0)"
        )
    };
}
pub(super) use claimable;

/// A family with its owner, one row per role (none when the user has no role), filtered by
/// the literal given.
macro_rules! family_and_owner {
    ($rest:literal) => {
        concat!(
            "SELECT ",
            $crate::store::rotation::family_owner_columns!(),
            ", r.role_name AS roles \
             FROM refresh_families f JOIN users u ON u.id = f.user_id \
             LEFT JOIN user_roles r ON r.user_id = u.id ",
            $rest
        )
    };
}
pub(super) use family_and_owner;

/// The rows of [`family_and_owner!`] as one rotation; `None` when there are none.
pub(super) fn claimed_rotation(rows: Vec<FamilyUserRow>) -> Option<Rotation> {
    let roles: Vec<String> = rows.iter().filter_map(|r| r.roles.clone()).collect();
    rows.into_iter()
        .next()
        .map(|first| first.into_rotation(roles))
}

/// How long after a rotation began its settling may still do it again when it did not commit:
/// well inside any client's timeout, so that the client cannot have given up and retried the
/// token meanwhile (a second rotation of it would be judged reuse). Later, settling only looks.
pub(super) const REDO_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);

/// The rotation statements shared by both backends. Each backend's store supplies
/// `claim_rotation` (its fastest way to claim and rotate) and `begin_settle` (a transaction in
/// which the presented token's row cannot change).
macro_rules! rotation_statements {
    () => {
        /// Rotates a refresh token: marks the presented one used and issues its successor,
        /// atomically; when the claim fails, says how the token stands.
        ///
        /// When the answer is lost after a statement was sent (the connection cut before or
        /// after the commit, the primary gone in a failover), the rotation is settled: see
        /// `settle_patiently`. Failures before anything was sent ([`StoreError::Unreachable`])
        /// cannot have changed anything and are answered as they are.
        pub(super) async fn rotate_refresh_token(
            &self,
            req: RotationRequest,
        ) -> Result<Rotation, StoreError> {
            let started = tokio::time::Instant::now();
            let claimed = match self.claim_rotation(&req).await {
                Err(StoreError::Unavailable(lost)) => {
                    let settled = self.settle_patiently(&req, started).await;
                    let how: &'static str = match &settled {
                        Ok(Some((_, how))) => how,
                        Ok(None) => "not_committed",
                        Err(_) => "failed",
                    };
                    metrics::counter!("tessera_refresh_rotations_recovered_total", "how" => how)
                        .increment(1);
                    match settled {
                        Ok(Some((outcome, how))) => {
                            tracing::warn!(error = %lost, how, "a refresh rotation's answer was lost; recovered");
                            outcome
                        }
                        Ok(None) => {
                            tracing::warn!(error = %lost, "a refresh rotation's answer was lost; it did not commit, and the client's retry will do it");
                            return Err(StoreError::Unavailable(lost));
                        }
                        Err(e) => {
                            tracing::warn!(error = %lost, settling = %e, "a refresh rotation's answer was lost and it could not be settled");
                            return Err(StoreError::Unavailable(lost));
                        }
                    }
                }
                other => other?,
            };
            match claimed {
                Some(rotation) => Ok(rotation),
                None => Ok(Rotation::NotClaimed(
                    self.find_refresh_token(&req.presented_hash).await?,
                )),
            }
        }

        /// Settles a rotation whose answer was lost. At once, twice (the settling's own
        /// answer can be lost too; after its commit, settling again finds what it did): the
        /// rotation it committed, or when it did not commit, the rotation done now, if the
        /// request began less than [`REDO_WITHIN`] ago. Then, while the database stays
        /// unavailable (a failover), for up to `settle_timeout`: only a look for the rotation
        /// it committed, so that one that committed before the primary died is still delivered
        /// from the new one. `None`: it did not commit and was not done again.
        ///
        /// Never done again late: by then the client may have given up on this request and
        /// retried the token, and a second rotation of it would be judged reuse, revoking the
        /// login. Answered 503 instead, the client's retry does the rotation.
        async fn settle_patiently(
            &self,
            req: &RotationRequest,
            started: tokio::time::Instant,
        ) -> Result<Option<(Option<Rotation>, &'static str)>, StoreError> {
            let deadline = tokio::time::Instant::now() + self.settle_timeout;
            let mut pause = std::time::Duration::from_millis(50);
            let mut tries = 0;
            loop {
                tries += 1;
                let may_redo = tries <= 2 && started.elapsed() < $crate::store::rotation::REDO_WITHIN;
                match self.settle_rotation(req, may_redo, started).await {
                    Err(e) if e.is_unavailable()
                        && (tries < 2 || tokio::time::Instant::now() + pause < deadline) =>
                    {
                        tracing::debug!(error = %e, tries, "settling a rotation: database unavailable; trying again");
                        if tries >= 2 {
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(std::time::Duration::from_millis(500));
                        }
                    }
                    settled => return settled,
                }
            }
        }

        /// One settling: the rotation this request committed (`found`); when it did not
        /// commit, with `may_redo`, the rotation done now (`redone`), else `None`.
        ///
        /// Only this request knows the successor's hash, so finding the successor means this
        /// request's rotation committed. A statement cut off from its client may still be
        /// running (waiting for a row lock or the WAL flush) and commit after a look, so the
        /// look runs in `begin_settle`'s transaction, in which the presented token's row
        /// cannot change any more.
        async fn settle_rotation(
            &self,
            req: &RotationRequest,
            may_redo: bool,
            started: tokio::time::Instant,
        ) -> Result<Option<(Option<Rotation>, &'static str)>, StoreError> {
            let mut tx = self.begin_settle(&req.presented_hash).await?;
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
            if let Some(rotation) = claimed_rotation(rows) {
                // Nothing to commit: the answer is known, whatever would become of a commit's.
                drop(tx);
                return Ok(Some((Some(rotation), "found")));
            }
            if !may_redo {
                return Ok(None);
            }
            // The rotation commits before REDO_WITHIN has passed, or not at all.
            let commit_by = started + $crate::store::rotation::REDO_WITHIN;
            match self.claim_in(tx, req, Some(commit_by)).await? {
                // Not ours to judge: another request used the token meanwhile (this one's
                // client may have given up and retried), or it was revoked or expired since.
                // This request says nothing of it; the client's retry is judged as usual.
                Some(Rotation::NotClaimed(_)) => Ok(None),
                // Not ready to commit by `commit_by`: rolled back.
                None => Ok(None),
                redone => Ok(Some((redone, "redone"))),
            }
        }

        /// The multi-statement rotation, in `tx`: claims the token, inserts its successor and
        /// the audit row, and commits; when the claim fails, changes nothing and says how the
        /// token stands.
        ///
        /// With `commit_by` (a settling's redo), a rotation not ready to commit by then is
        /// rolled back instead, and answered `None`.
        async fn claim_in(
            &self,
            mut tx: sqlx::Transaction<'static, Db>,
            req: &RotationRequest,
            commit_by: Option<tokio::time::Instant>,
        ) -> Result<Option<Rotation>, StoreError> {
            let claimed: Option<String> = sqlx::query_scalar(concat!(
                "UPDATE refresh_tokens AS t SET rotated_at = $1, idle_expires_at = $4 \
                 WHERE t.token_hash = $2 AND ",
                claimable!("t", "$1", "$3"),
                " RETURNING family_id"
            ))
            .bind(req.now)
            .bind(req.presented_hash.clone())
            .bind(&req.client_id)
            .bind(req.forget_rotated_at)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(family_id) = claimed else {
                // Read in the claim's transaction: on SQLite nothing can change the token
                // between the failed claim and this look.
                let found = sqlx::query_as::<_, RefreshLookup>(LOOKUP)
                    .bind(req.presented_hash.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
                return Ok(Some(Rotation::NotClaimed(found)));
            };
            let rows = sqlx::query_as::<_, FamilyUserRow>(family_and_owner!("WHERE f.id = $1"))
                .bind(&family_id)
                .fetch_all(&mut *tx)
                .await?;
            let roles: Vec<String> = rows.iter().filter_map(|r| r.roles.clone()).collect();
            let Some(first) = rows.into_iter().next() else {
                return Err(StoreError::NotFound("refresh family"));
            };
            if let Some(allows) = &req.narrowing
                && !allows(&first.scope)
            {
                // Dropping the transaction rolls the claim back: the token stays usable.
                return Ok(Some(Rotation::ScopeNotGranted));
            }
            let idle_expires_at = req.new_idle_expires_at.min(first.expires_at);
            Self::insert_token(&mut tx, &req.new_hash, &first.id, req.now, idle_expires_at)
                .await?;
            let mut event = req.success_event.clone().user(first.username.clone());
            event.target = first.id.clone();
            Self::insert_audit(&mut tx, std::slice::from_ref(&event)).await?;
            if commit_by.is_some_and(|by| tokio::time::Instant::now() >= by) {
                // Dropping the transaction rolls the claim back: the token stays usable.
                return Ok(None);
            }
            tx.commit().await?;
            Ok(Some(first.into_rotation(roles)))
        }
    };
}
pub(super) use rotation_statements;
