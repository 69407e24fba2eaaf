//! Postgres keeps the audit log in one partition per UTC day, so that retention drops whole
//! days (a catalogue change) instead of deleting rows, and the insert path never competes
//! with clean-up for the same pages. SQLite has no partitions: its clean-up deletes rows.

use super::PgStore;
use crate::store::StoreError;

const DAY: i64 = 86_400;
const PREFIX: &str = "audit_log_p";
/// Partition DDL waits this long for each lock and otherwise gives up until the next run: a
/// lock request queued behind a long query holds up every audit insert queued behind it (a
/// DROP takes ACCESS EXCLUSIVE on the parent), so the wait it can impose stays this short. A
/// day's partition is dropped at any of the day's many clean-up runs.
const LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '50ms'";
/// Any constant: it serialises partition changes across instances.
const ADVISORY_KEY: i64 = 0x7465_7373_6175_6474;

/// `audit_log_pYYYYMMDD` of the UTC day that starts at `day` (Unix seconds).
fn partition_name(day: i64) -> Option<String> {
    let date = time::OffsetDateTime::from_unix_timestamp(day).ok()?;
    Some(format!(
        "{PREFIX}{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    ))
}

/// The start of the day a partition name stands for.
fn partition_day(name: &str) -> Option<i64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let year: i32 = digits[0..4].parse().ok()?;
    let month: u8 = digits[4..6].parse().ok()?;
    let day: u8 = digits[6..8].parse().ok()?;
    let date =
        time::Date::from_calendar_date(year, time::Month::try_from(month).ok()?, day).ok()?;
    Some(date.midnight().assume_utc().unix_timestamp())
}

impl PgStore {
    /// Attaches day partitions from the day of `now` through `days_ahead` days after it that
    /// do not exist yet; returns how many it attached. A day whose rows are already in the
    /// default partition is left there (logged), as is every day when another instance holds
    /// the partition lock or a lock is not granted in time: the next run tries again.
    pub(in crate::store) async fn prepare_audit_partitions(
        &self,
        now: i64,
        days_ahead: i64,
    ) -> Result<u64, StoreError> {
        let today = now.div_euclid(DAY) * DAY;
        let mut attached = 0;
        for i in 0..=days_ahead {
            let from = today.saturating_add(i * DAY);
            let Some(name) = partition_name(from) else {
                continue;
            };
            let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::TEXT")
                .bind(&name)
                .fetch_one(&self.pool)
                .await?;
            if exists.is_some() {
                continue;
            }
            match self.attach_partition(&name, from, from + DAY).await {
                Ok(true) => attached += 1,
                Ok(false) => {}
                Err(StoreError::Backend(error)) => {
                    tracing::warn!(%error, partition = %name, "audit partition not attached; events of that day go to audit_log_default");
                }
                Err(other) => return Err(other),
            }
        }
        Ok(attached)
    }

    /// Creates the table apart, with a CHECK that lets ATTACH skip scanning it, and attaches it
    /// (which takes a lighter lock on the parent than CREATE TABLE ... PARTITION OF).
    async fn attach_partition(&self, name: &str, from: i64, to: i64) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(ADVISORY_KEY)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(false);
        }
        sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
        // `name` is made of digits and a fixed prefix, the bounds are integers.
        for sql in [
            format!(
                "CREATE TABLE IF NOT EXISTS {name} (LIKE audit_log INCLUDING DEFAULTS, \
                 CONSTRAINT {name}_range CHECK (at >= {from} AND at < {to}))"
            ),
            format!(
                "ALTER TABLE audit_log ATTACH PARTITION {name} FOR VALUES FROM ({from}) TO ({to})"
            ),
            format!("ALTER TABLE {name} DROP CONSTRAINT {name}_range"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Drops the day partitions that end at or before `cutoff`; returns how many partitions
    /// and (as Postgres last counted them) rows went.
    pub(in crate::store) async fn drop_audit_partitions(
        &self,
        cutoff: i64,
    ) -> Result<(u64, u64), StoreError> {
        let children: Vec<(String, f32)> = sqlx::query_as(
            "SELECT c.relname::TEXT, c.reltuples FROM pg_inherits i \
             JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'audit_log'::regclass",
        )
        .fetch_all(&self.pool)
        .await?;
        let (mut partitions, mut rows) = (0, 0);
        for (name, tuples) in children {
            let Some(day) = partition_day(&name) else {
                continue;
            };
            if day + DAY > cutoff {
                continue;
            }
            let mut tx = self.begin_write().await?;
            sqlx::query(LOCK_TIMEOUT).execute(&mut *tx).await?;
            // `name` came back from partition_day: a fixed prefix and eight digits.
            let dropped = sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE IF EXISTS {name}")))
                .execute(&mut *tx)
                .await;
            match dropped {
                Ok(_) => {
                    tx.commit().await?;
                    partitions += 1;
                    rows += tuples.max(0.0) as u64;
                }
                // Not granted in time (or dropped by another instance meanwhile): next run.
                Err(error) => {
                    tracing::warn!(%error, partition = %name, "audit partition not dropped yet")
                }
            }
        }
        Ok((partitions, rows))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_days_round_trip() {
        let day = 1_795_737_600; // 2026-11-27T00:00:00Z
        assert_eq!(partition_name(day).as_deref(), Some("audit_log_p20261127"));
        assert_eq!(partition_day("audit_log_p20261127"), Some(day));
        assert_eq!(partition_day("audit_log_default"), None);
        assert_eq!(partition_day("audit_log_p2026112"), None);
        assert_eq!(partition_day("audit_log_p20261327"), None);
        assert_eq!(partition_day("audit_log_p2026112x"), None);
    }
}
