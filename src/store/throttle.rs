//! Consecutive failed logins per normalized username, shared by every instance. Only settled
//! failures count here; how many checks of one account may be in flight at once is bounded
//! in memory by `oauth::login_gate`.

use sqlx::FromRow;

use super::users::{UserProfile, UserRecord};

/// A user (all columns NULL when there is none), one of their roles, and the throttle state.
#[derive(FromRow)]
pub(super) struct LoginRow {
    id: Option<String>,
    username: Option<String>,
    password_hash: Option<String>,
    disabled: Option<i64>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    password_changed_at: Option<i64>,
    email: Option<String>,
    email_verified: Option<i64>,
    display_name: Option<String>,
    role_name: Option<String>,
    failures: Option<i64>,
    locked_until: Option<i64>,
}

#[derive(Debug, Clone, Copy, FromRow)]
pub struct ThrottleState {
    pub failures: i64,
    pub locked_until: i64,
}

/// The user (with their roles) and throttle state in `find_login`'s rows.
pub(super) fn login_from_rows(rows: Vec<LoginRow>) -> (Option<UserRecord>, Option<ThrottleState>) {
    let throttle = rows.first().and_then(|r| {
        Some(ThrottleState {
            failures: r.failures?,
            locked_until: r.locked_until?,
        })
    });
    let mut rows = rows.into_iter();
    let user = rows.next().and_then(|first| {
        let mut user = UserRecord {
            id: first.id?,
            username: first.username?,
            password_hash: first.password_hash?,
            disabled: first.disabled? != 0,
            roles: first.role_name.into_iter().collect(),
            created_at: first.created_at?,
            updated_at: first.updated_at?,
            password_changed_at: first.password_changed_at?,
            profile: UserProfile::from_columns(
                first.email,
                first.email_verified?,
                first.display_name,
            ),
        };
        user.roles.extend(rows.filter_map(|r| r.role_name));
        user.roles.sort();
        Some(user)
    });
    (user, throttle)
}

/// The throttle statements shared by both backends.
macro_rules! throttle_statements {
    () => {
        pub(super) async fn login_throttle(
            &self,
            username_normalized: &str,
        ) -> Result<Option<ThrottleState>, StoreError> {
            Ok(sqlx::query_as::<_, ThrottleState>(
                "SELECT failures, locked_until FROM login_throttle WHERE username_normalized = $1",
            )
            .bind(username_normalized)
            .fetch_optional(&self.pool)
            .await?)
        }

        /// What a login needs before its password check, in one round trip: the user (if any)
        /// with roles, and the account's throttle state (kept for unknown names too).
        pub(super) async fn find_login(
            &self,
            username_normalized: &str,
        ) -> Result<(Option<UserRecord>, Option<ThrottleState>), StoreError> {
            let rows = sqlx::query_as::<_, LoginRow>(
                "SELECT u.id, u.username, u.password_hash, u.disabled, u.created_at, u.updated_at, \
                 u.password_changed_at, u.email, u.email_verified, u.display_name, r.role_name, \
             t.failures, t.locked_until \
                 FROM (SELECT CAST($1 AS TEXT) AS name) q \
                 LEFT JOIN users u ON u.username_normalized = q.name \
                 LEFT JOIN user_roles r ON r.user_id = u.id \
                 LEFT JOIN login_throttle t ON t.username_normalized = q.name",
            )
            .bind(username_normalized)
            .fetch_all(&self.pool)
            .await?;
            Ok(login_from_rows(rows))
        }

        /// Counts one failed password on the account and locks it until `lock_until(count)`,
        /// when that says so. Returns the count.
        pub(super) async fn record_login_failure(
            &self,
            username_normalized: &str,
            now: i64,
            lock_until: &(dyn Fn(i64) -> Option<i64> + Sync),
        ) -> Result<i64, StoreError> {
            let mut tx = self.begin_write().await?;
            let (failures,): (i64,) = sqlx::query_as(
                "INSERT INTO login_throttle (username_normalized, failures, locked_until, updated_at) \
                 VALUES ($1, 1, 0, $2) ON CONFLICT (username_normalized) DO UPDATE SET \
                 failures = login_throttle.failures + 1, updated_at = $2 \
                 RETURNING failures",
            )
            .bind(username_normalized)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            // The lock is decided on the count this transaction wrote, so that concurrent
            // failures each see their own.
            if let Some(until) = lock_until(failures) {
                // Never shortens a lock a concurrent failure set.
                sqlx::query(
                    "UPDATE login_throttle SET locked_until = \
                     CASE WHEN locked_until > $1 THEN locked_until ELSE $1 END \
                     WHERE username_normalized = $2",
                )
                .bind(until)
                .bind(username_normalized)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(failures)
        }

        /// A success ends the run of consecutive failures: the `seen` failures read before its
        /// check. Failures (and a lock) that other attempts added meanwhile stay.
        pub(super) async fn clear_login_failures(
            &self,
            username_normalized: &str,
            seen: i64,
        ) -> Result<(), StoreError> {
            sqlx::query("DELETE FROM login_throttle WHERE username_normalized = $1 AND failures <= $2")
                .bind(username_normalized)
                .bind(seen)
                .execute(&self.pool)
                .await?;
            Ok(())
        }

        /// Forgets counters idle since before `cutoff` (bounds what failed logins can store).
        pub(super) async fn gc_login_throttle(&self, cutoff: i64, batch: i64) -> Result<u64, StoreError> {
            Ok(sqlx::query(
                "DELETE FROM login_throttle WHERE username_normalized IN \
                 (SELECT username_normalized FROM login_throttle WHERE updated_at < $1 AND locked_until < $1 LIMIT $2)",
            )
            .bind(cutoff)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected())
        }
    };
}
pub(super) use throttle_statements;
