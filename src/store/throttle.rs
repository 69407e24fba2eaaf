//! Failed-login counters per normalized username, shared by every instance.

use sqlx::FromRow;

use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, FromRow)]
pub struct ThrottleState {
    pub failures: i64,
    pub locked_until: i64,
}

impl Store {
    pub async fn login_throttle(
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

    /// Counts one more failure; from `max_failures` on, locks for a backoff that doubles per
    /// extra failure, capped at `max_backoff` seconds.
    pub async fn record_login_failure(
        &self,
        username_normalized: &str,
        now: i64,
        max_failures: u32,
        max_backoff: i64,
    ) -> Result<(), StoreError> {
        let failures: i64 = sqlx::query_scalar(
            "INSERT INTO login_throttle (username_normalized, failures, locked_until, updated_at) \
             VALUES ($1, 1, 0, $2) ON CONFLICT (username_normalized) DO UPDATE \
             SET failures = login_throttle.failures + 1, updated_at = $2 RETURNING failures",
        )
        .bind(username_normalized)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        if failures >= i64::from(max_failures) {
            let extra = u32::try_from(failures - i64::from(max_failures))
                .unwrap_or(u32::MAX)
                .min(30);
            let backoff = (1i64 << extra).saturating_mul(2).min(max_backoff);
            sqlx::query(
                "UPDATE login_throttle SET locked_until = $1 WHERE username_normalized = $2",
            )
            .bind(now.saturating_add(backoff))
            .bind(username_normalized)
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    pub async fn reset_login_failures(&self, username_normalized: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM login_throttle WHERE username_normalized = $1")
            .bind(username_normalized)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets counters idle since before `cutoff` (bounds what failed logins can store).
    pub async fn gc_login_throttle(&self, cutoff: i64, batch: i64) -> Result<u64, StoreError> {
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
}
