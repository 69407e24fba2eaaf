//! The audit log: one row per security event, written in the transaction of the state change
//! it describes wherever there is one.

use serde::Serialize;

/// A security event about to be recorded.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    pub at: i64,
    /// `cli:<os user>`, `client:<client_id>`, `user:<username>` or `system`.
    pub actor: String,
    /// Dotted name: `login.success`, `refresh.reuse_detected`, `user.add`, ...
    pub action: &'static str,
    pub target: String,
    /// `success`, `failure` or `denied`.
    pub outcome: &'static str,
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(
        at: i64,
        actor: impl Into<String>,
        action: &'static str,
        target: impl Into<String>,
    ) -> Self {
        Self {
            at,
            actor: storable(actor.into()),
            action,
            target: storable(target.into()),
            outcome: "success",
            username: None,
            client_id: None,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    pub fn outcome(mut self, outcome: &'static str) -> Self {
        self.outcome = outcome;
        self
    }

    /// Stored lower-case (as usernames are normalized) so that `tessera audit --user` finds
    /// every event of an account whatever case was typed.
    pub fn user(self, username: impl Into<String>) -> Self {
        self.user_if_known(Some(username.into()))
    }

    /// [`Self::user`] when the account is known.
    pub fn user_if_known(mut self, username: Option<String>) -> Self {
        self.username = username.map(|name| storable(name).to_lowercase());
        self
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(storable(client_id.into()));
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// `text` with each NUL replaced by U+FFFD. Postgres text cannot hold NUL, and events are
/// written in batches shared by many requests: one such value would fail every event in its
/// batch, and those requests with it. Inputs refuse NUL before they get here; this is the
/// last line. (Details are JSON, whose encoding escapes NUL already.)
fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

/// A recorded event, as `tessera audit` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub details: String,
}

/// Filters of `tessera audit`; all optional, combined with AND.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub action: Option<String>,
    pub since: Option<i64>,
    /// Only rows listed after this one (`at`, `id`): older, or as old with a lower id.
    pub after: Option<(i64, i64)>,
    pub limit: i64,
}

/// Rows per INSERT statement: bounds one statement's size, and on SQLite (8 parameters a row)
/// stays far below its parameter limit.
pub const MAX_BATCH: usize = 500;

/// The audit columns, in the order [`values`] and [`bind`] use.
pub(super) const COLUMNS: &str = "at, actor, action, target, outcome, username, client_id, details";

/// `($first, ...), (...)`: one row of numbered placeholders per event, for [`bind`].
pub(super) fn values(first: usize, events: usize) -> String {
    (0..events)
        .map(|i| {
            let p = first + i * 8;
            format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p,
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The audit statements shared by both backends.
macro_rules! audit_statements {
    () => {
        /// Binds `events` to the placeholders [`values`] made.
        fn bind_audit<'q>(
            mut query: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments>,
            events: &[AuditEvent],
        ) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments> {
            for e in events {
                query = query
                    .bind(e.at)
                    .bind(e.actor.clone())
                    .bind(e.action)
                    .bind(e.target.clone())
                    .bind(e.outcome)
                    .bind(e.username.clone())
                    .bind(e.client_id.clone())
                    .bind(e.details.to_string());
            }
            query
        }

        /// Inserts events with one statement per [`MAX_BATCH`] rows (the backend's
        /// `insert_audit_rows`).
        async fn insert_audit(conn: &mut Conn, events: &[AuditEvent]) -> Result<(), sqlx::Error> {
            for chunk in events.chunks(MAX_BATCH) {
                insert_audit_rows(conn, chunk).await?;
            }
            Ok(())
        }

        /// Ends a change of one row: `NotFound(what)` (rolling back) when `affected` is 0,
        /// otherwise its audit row and the commit.
        async fn commit_change(
            mut tx: sqlx::Transaction<'static, Db>,
            affected: u64,
            what: &'static str,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            if affected == 0 {
                return Err(StoreError::NotFound(what));
            }
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Records events that go with no state change (a failed login, a denied request).
        pub(super) async fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
            let mut conn = self.pool.acquire().await?;
            Self::insert_audit(&mut conn, events).await?;
            Ok(())
        }

        /// Newest first.
        pub(super) async fn audit_query(
            &self,
            filter: &AuditFilter,
        ) -> Result<Vec<AuditRow>, StoreError> {
            // NULL parameters switch a condition off, so one statement serves every filter and
            // the planner still uses the (column, at) indexes for the ones given.
            let rows = sqlx::query_as::<_, AuditRow>(
                "SELECT id, at, actor, action, target, outcome, username, client_id, details \
                 FROM audit_log \
                 WHERE ($1 IS NULL OR username = $1) \
                   AND ($2 IS NULL OR client_id = $2) \
                   AND ($3 IS NULL OR action = $3) \
                   AND at >= $4 AND (at, id) < ($5, $6) \
                 ORDER BY at DESC, id DESC LIMIT $7",
            )
            .bind(filter.username.as_deref())
            .bind(filter.client_id.as_deref())
            .bind(filter.action.as_deref())
            .bind(filter.since.unwrap_or(i64::MIN))
            .bind(filter.after.map_or(i64::MAX, |a| a.0))
            .bind(filter.after.map_or(i64::MAX, |a| a.1))
            .bind(filter.limit)
            .fetch_all(&self.pool)
            .await?;
            Ok(rows)
        }
    };
}
pub(super) use audit_statements;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_never_reaches_a_stored_field() {
        let event = AuditEvent::new(1, "client:a\0b", "login.failure", "\0x")
            .user("u\0")
            .client("c\0\0");
        assert_eq!(event.actor, "client:a\u{FFFD}b");
        assert_eq!(event.target, "\u{FFFD}x");
        assert_eq!(event.username.as_deref(), Some("u\u{FFFD}"));
        assert_eq!(event.client_id.as_deref(), Some("c\u{FFFD}\u{FFFD}"));
        let plain = AuditEvent::new(1, "cli:root", "user.add", "alice").user("alice");
        assert_eq!(
            (plain.actor.as_str(), plain.target.as_str()),
            ("cli:root", "alice")
        );
    }
}
