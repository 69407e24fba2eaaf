//! Clean-up of what has expired, in bounded batches so no statement holds locks for long and
//! several instances can run it at once without harm.

use serde::Serialize;

/// One access token's facts, as its claims state them, for the usability check of
/// introspection.
#[derive(Debug, Clone, Serialize)]
pub struct AccessCheck {
    pub jti: String,
    pub client_id: String,
    /// Set for tokens issued to a user: the `sub` of a token that has `preferred_username`.
    pub user_id: Option<String>,
    /// The refresh family the token was issued with (`sid`): revoking it revokes the token.
    pub family_id: Option<String>,
    pub iat: i64,
}

/// No stored jti, client id or user id holds NUL: a check naming one is not usable, and is
/// answered without a statement (Postgres would reject it inside a batch's JSON).
pub(super) fn holds_nul(check: &AccessCheck) -> bool {
    [
        Some(&check.jti),
        Some(&check.client_id),
        check.user_id.as_ref(),
        check.family_id.as_ref(),
    ]
    .into_iter()
    .flatten()
    .any(|s| s.contains('\0'))
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct GcReport {
    pub refresh_families: u64,
    pub refresh_tokens: u64,
    pub denylist: u64,
    pub audit_rows: u64,
    /// Postgres: whole day partitions of the audit log dropped (their rows are in
    /// `audit_rows`, as Postgres last estimated them).
    pub audit_partitions: u64,
    /// Login sessions ended or expired.
    pub login_sessions: u64,
    /// Authorization codes past the revoked cut-off (kept so far for replay detection).
    pub authorization_codes: u64,
}

/// The cut-off times of one clean-up.
#[derive(Debug, Clone, Copy)]
pub struct GcCutoffs {
    pub now: i64,
    /// Audit rows older than this go.
    pub audit: i64,
    /// Families revoked at or before this go, with their tokens.
    pub revoked: i64,
}

/// The clean-up and access-check statements shared by both backends; each backend adds
/// `access_token_usable` and says which table holds the audit rows to delete one by one.
macro_rules! maintenance_statements {
    () => {
        /// Deletes one batch of expired families and of families revoked before the cut-off (their
        /// tokens cascade), of tokens past their idle expiry (a rotated token's is brought forward to
        /// the end of reuse detection) with the families whose live token that was, of expired
        /// denylist entries, and of audit rows older than the cut-off that no day partition holds.
        /// Returns how many of each went; call until all are zero.
        pub(super) async fn gc_batch(&self, cut: GcCutoffs, batch: i64) -> Result<GcReport, StoreError> {
            let now = cut.now;
            // A revoked family is kept until the revoked cut-off whatever else ends it: introspection
            // refuses its access tokens (their `sid`) only while its row says it was revoked.
            let expired_families = sqlx::query(
                "DELETE FROM refresh_families WHERE id IN \
                 (SELECT id FROM refresh_families WHERE expires_at <= $1 \
                  AND (revoked_at IS NULL OR revoked_at <= $3) LIMIT $2)",
            )
            .bind(now)
            .bind(batch)
            .bind(cut.revoked)
            .execute(&self.pool)
            .await?
            .rows_affected();
            let revoked_families = sqlx::query(
                "DELETE FROM refresh_families WHERE id IN \
                 (SELECT id FROM refresh_families WHERE revoked_at <= $1 LIMIT $2)",
            )
            .bind(cut.revoked)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            // An expired token that was never rotated was its family's live one: the family can
            // never be used again, so it goes too (its rotated tokens with it) rather than waiting
            // for its absolute expiry.
            let gone: Vec<Option<String>> = sqlx::query_scalar(
                "DELETE FROM refresh_tokens WHERE token_hash IN \
                 (SELECT token_hash FROM refresh_tokens WHERE idle_expires_at <= $1 LIMIT $2) \
                 RETURNING CASE WHEN rotated_at IS NULL THEN family_id END",
            )
            .bind(now)
            .bind(batch)
            .fetch_all(&self.pool)
            .await?;
            let refresh_tokens = gone.len() as u64;
            let dead: Vec<String> = gone.into_iter().flatten().collect();
            let mut idle_families = 0;
            // In chunks: both backends bound the parameters of one statement.
            for chunk in dead.chunks(500) {
                let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
                // Only numbered placeholders are generated; every id is bound.
                let mut query = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM refresh_families WHERE id IN ({}) \
                     AND (revoked_at IS NULL OR revoked_at <= ${})",
                    placeholders.join(", "),
                    chunk.len() + 1
                )));
                for id in chunk {
                    query = query.bind(id);
                }
                query = query.bind(cut.revoked);
                idle_families += query.execute(&self.pool).await?.rows_affected();
            }
            let denylist = sqlx::query(
                "DELETE FROM access_denylist WHERE jti IN \
                 (SELECT jti FROM access_denylist WHERE expires_at <= $1 LIMIT $2)",
            )
            .bind(now)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            // A session gone idle stays until its absolute end (its families, capped there,
            // too), so that `tessera session revoke --user` still finds what it started.
            let login_sessions = sqlx::query(
                "DELETE FROM browser_sessions WHERE id IN (SELECT id FROM browser_sessions \
                 WHERE expires_at <= $1 OR revoked_at IS NOT NULL LIMIT $2)",
            )
            .bind(now)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            // A redeemed code is kept as long as a revoked family, so that presenting it again
            // still revokes what it issued (RFC 6749 §4.1.2).
            let authorization_codes = sqlx::query(
                "DELETE FROM authorization_codes WHERE code_hash IN (SELECT code_hash \
                 FROM authorization_codes WHERE expires_at <= $1 LIMIT $2)",
            )
            .bind(cut.revoked)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            let table = self.audit_rows_table();
            // `table` is one of two fixed names.
            let audit_rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE (at, id) IN \
                 (SELECT at, id FROM {table} WHERE at < $1 LIMIT $2)"
            )))
            .bind(cut.audit)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
            Ok(GcReport {
                refresh_families: expired_families + idle_families + revoked_families,
                refresh_tokens,
                denylist,
                audit_rows,
                audit_partitions: 0,
                login_sessions,
                authorization_codes,
            })
        }

        /// Puts an access token's `jti` on the denylist until `expires_at`.
        pub(super) async fn deny_access_token(
            &self,
            jti: &str,
            expires_at: i64,
            event: &AuditEvent,
        ) -> Result<(), StoreError> {
            let mut tx = self.begin_write().await?;
            sqlx::query(
                "INSERT INTO access_denylist (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            Self::insert_audit(&mut tx, std::slice::from_ref(event)).await?;
            tx.commit().await?;
            Ok(())
        }

        /// The token is not denylisted, its client still exists and, for a user
        /// token, its user still exists, is enabled and has not changed password since `iat`.
        /// One check in a statement of its own.
        async fn check_access_alone(&self, check: &AccessCheck) -> Result<bool, StoreError> {
            let (denied, client_ok, user_ok, family_revoked): (i64, i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM access_denylist WHERE jti = $1), \
                        (SELECT COUNT(*) FROM clients WHERE client_id = $2), \
                        (SELECT COUNT(*) FROM users WHERE id = $3 AND disabled = 0 AND password_changed_at <= $4), \
                        (SELECT COUNT(*) FROM refresh_families WHERE id = $5 AND revoked_at IS NOT NULL)",
            )
            .bind(&check.jti)
            .bind(&check.client_id)
            .bind(check.user_id.as_deref().unwrap_or(""))
            .bind(check.iat)
            .bind(check.family_id.as_deref().unwrap_or(""))
            .fetch_one(&self.pool)
            .await?;
            Ok(denied == 0
                && client_ok > 0
                && family_revoked == 0
                && (check.user_id.is_none() || user_ok > 0))
        }
    };
}
pub(super) use maintenance_statements;
