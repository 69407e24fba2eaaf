//! Login attempts per normalized username, shared by every instance. An attempt is counted
//! before its password is checked, one at a time per account, so a burst of concurrent guesses
//! cannot slip past the limit: the attempt that reaches it locks the account for the rest.

use sqlx::FromRow;

use super::{Store, StoreError};

#[derive(Debug, Clone, Copy, FromRow)]
pub struct ThrottleState {
    pub failures: i64,
    pub locked_until: i64,
}

/// The refusal after `failures` unproven attempts: 2 s at the limit, doubling per extra
/// attempt, capped at `max_backoff` seconds.
pub fn backoff(failures: i64, max_failures: u32, max_backoff: i64) -> i64 {
    let extra = u32::try_from(failures - i64::from(max_failures))
        .unwrap_or(30)
        .min(30);
    (2i64 << extra).min(max_backoff)
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

    /// Counts one attempt. Returns `None`, counting nothing, while the account is locked, else
    /// the count including this attempt (for [`Store::reset_login_failures`]).
    /// The attempt that brings the count to `max_failures` or beyond locks the account at
    /// once, before its own password is checked; a success clears it all
    /// ([`Store::reset_login_failures`]).
    pub async fn begin_login_attempt(
        &self,
        username_normalized: &str,
        now: i64,
        max_failures: u32,
        max_backoff: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let state = sqlx::query_as::<_, ThrottleState>(
            "INSERT INTO login_throttle (username_normalized, failures, locked_until, updated_at) \
             VALUES ($1, 1, 0, $2) ON CONFLICT (username_normalized) DO UPDATE SET \
             failures = CASE WHEN login_throttle.locked_until > $2 THEN login_throttle.failures \
                             ELSE login_throttle.failures + 1 END, \
             updated_at = $2 \
             RETURNING failures, locked_until",
        )
        .bind(username_normalized)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if state.locked_until > now {
            tx.commit().await?;
            return Ok(None);
        }
        if state.failures >= i64::from(max_failures) {
            sqlx::query(
                "UPDATE login_throttle SET locked_until = $1 WHERE username_normalized = $2",
            )
            .bind(now.saturating_add(backoff(state.failures, max_failures, max_backoff)))
            .bind(username_normalized)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Some(state.failures))
    }

    /// Clears the counter after a success, unless attempts counted after `seen` (concurrent
    /// guesses) are there: those keep counting.
    pub async fn reset_login_failures(
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

#[cfg(test)]
mod tests {
    use super::backoff;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(5, 5, 900), 2);
        assert_eq!(backoff(6, 5, 900), 4);
        assert_eq!(backoff(7, 5, 900), 8);
        assert_eq!(backoff(20, 5, 900), 900);
        assert_eq!(backoff(500, 5, 900), 900);
    }
}
