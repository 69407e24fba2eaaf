//! The maintenance every instance runs in the background: audit partitions attached ahead of
//! need, and clean-up every `maintenance.gc_interval`.

use std::sync::Arc;
use std::time::Duration;

use super::{AUDIT_DAYS_AHEAD, CleanupPolicy, collect_garbage};
use crate::clock::Clock;
use crate::store::Store;

/// Attaches the audit log's day partitions ahead of need, at start and hourly, whether or not
/// clean-up runs: without them events would pile up in the default partition.
pub async fn audit_partition_loop(store: Store, clock: Arc<dyn Clock>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        ticker.tick().await;
        if let Err(error) = store
            .prepare_audit_partitions(clock.now(), AUDIT_DAYS_AHEAD)
            .await
        {
            tracing::warn!(%error, "attaching audit partitions failed; will retry");
        }
    }
}

/// Deletes what has expired, on every instance; batches keep it safe to run concurrently.
pub async fn cleanup_loop(
    store: Store,
    clock: Arc<dyn Clock>,
    policy: CleanupPolicy,
    every: Duration,
) {
    if every.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match collect_garbage(&store, clock.now(), &policy).await {
            Ok(report) => tracing::debug!(?report, "clean-up done"),
            Err(error) => tracing::warn!(%error, "clean-up failed; will retry"),
        }
    }
}
