//! Clean-up of what has expired: refresh families and tokens, denylist entries, old audit rows,
//! idle throttle counters and keys no longer published. Every step works in bounded batches, so
//! several instances may run it at once; [`tasks`] runs it, and the audit partitions, in the
//! background.

pub mod tasks;

use serde::Serialize;

use crate::config::Settings;
use crate::crypto::jwt::KEY_PROPAGATION;
use crate::keys::{KeyState, describe};
use crate::store::{GcCutoffs, GcReport, Store, StoreError};

/// What one clean-up deleted.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CleanupReport {
    #[serde(flatten)]
    pub rows: GcReport,
    pub throttle_counters: u64,
    pub signing_keys: u64,
}

#[derive(Debug, Clone)]
pub struct CleanupPolicy {
    pub audit_retention: i64,
    /// Revoked families are kept this long for reuse detection (and never less than an
    /// access token lives).
    pub revoked_family_retention: i64,
    /// Throttle counters idle this long are forgotten.
    pub throttle_idle: i64,
    pub access_ttl: i64,
    /// Clock skew allowed between instances: a token minted by one whose clock runs ahead
    /// lives that much longer than this instance reckons.
    pub clock_leeway: i64,
    pub batch: i64,
}

/// Day partitions of the audit log attached ahead of need (Postgres).
pub const AUDIT_DAYS_AHEAD: i64 = 3;

pub async fn collect_garbage(
    store: &Store,
    now: i64,
    policy: &CleanupPolicy,
) -> Result<CleanupReport, StoreError> {
    let mut report = CleanupReport::default();
    // The longest an access token of any client lives: a revoked family must outlive its
    // access tokens (introspection refuses them by its `sid`), and a key the tokens it signed.
    let max_ttl = policy
        .access_ttl
        .max(store.max_client_access_ttl().await?.unwrap_or(0));
    let cut = GcCutoffs {
        now,
        audit: now.saturating_sub(policy.audit_retention),
        revoked: now.saturating_sub(
            policy
                .revoked_family_retention
                .max(max_ttl)
                // Twice: the instance deleting and the one that revoked may each be ahead.
                .saturating_add(2 * policy.clock_leeway.max(KEY_PROPAGATION)),
        ),
    };
    store
        .prepare_audit_partitions(now, AUDIT_DAYS_AHEAD)
        .await?;
    let (partitions, rows) = store.drop_audit_partitions(cut.audit).await?;
    report.rows.audit_partitions = partitions;
    report.rows.audit_rows = rows;
    loop {
        let batch = store.gc_batch(cut, policy.batch).await?;
        let done = batch == GcReport::default();
        report.rows.refresh_families += batch.refresh_families;
        report.rows.refresh_tokens += batch.refresh_tokens;
        report.rows.denylist += batch.denylist;
        report.rows.audit_rows += batch.audit_rows;
        report.rows.login_sessions += batch.login_sessions;
        report.rows.authorization_codes += batch.authorization_codes;
        if done {
            break;
        }
    }
    loop {
        let n = store
            .gc_login_throttle(now.saturating_sub(policy.throttle_idle), policy.batch)
            .await?;
        report.throttle_counters += n;
        if n == 0 {
            break;
        }
    }
    for key in describe(&store.list_keys().await?, now, max_ttl) {
        if key.state == KeyState::Expired {
            report.signing_keys += store.delete_key(&key.kid).await?;
        }
    }
    Ok(report)
}

impl CleanupPolicy {
    pub fn from_settings(s: &Settings) -> Self {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Self {
            audit_retention: secs(s.audit.retention),
            revoked_family_retention: secs(s.tokens.reuse_detection())
                .max(secs(s.tokens.access_ttl)),
            throttle_idle: secs(s.security.max_backoff).max(3600),
            access_ttl: secs(s.tokens.access_ttl),
            clock_leeway: secs(s.tokens.clock_leeway),
            batch: s.maintenance.gc_batch_size,
        }
    }
}
