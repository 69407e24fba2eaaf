//! The tasks every instance runs beside serving: key rotation and reloading, the metadata
//! refresh, and the maintenance tasks (audit partitions ahead of need, clean-up).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Settings;
use crate::http;
use crate::keys::KeyRing;
use crate::maintenance::CleanupPolicy;
use crate::maintenance::tasks::{audit_partition_loop, cleanup_loop};
use crate::store::Store;

/// Starts every background task; aborting the handles stops them.
pub(super) fn spawn(
    settings: &Settings,
    store: &Store,
    keys: Arc<KeyRing>,
    clock: &Arc<dyn Clock>,
    metadata: Arc<RwLock<Arc<[u8]>>>,
    issuer: String,
    algorithm: &'static str,
) -> Vec<JoinHandle<()>> {
    let key_watch = tokio::spawn(key_watch_loop(store.clone(), keys.clone()));
    let maintenance = tokio::spawn(maintenance_loop(
        store.clone(),
        keys,
        metadata,
        issuer,
        algorithm,
        settings.keys.reload_interval,
    ));
    let partitions = tokio::spawn(audit_partition_loop(store.clone(), clock.clone()));
    let cleanup = tokio::spawn(cleanup_loop(
        store.clone(),
        clock.clone(),
        CleanupPolicy::from_settings(settings),
        settings.maintenance.gc_interval,
    ));
    vec![maintenance, cleanup, partitions, key_watch]
}

/// Rotates and reloads keys and refreshes the metadata on every instance, periodically.
async fn maintenance_loop(
    store: Store,
    keys: Arc<KeyRing>,
    metadata: Arc<RwLock<Arc<[u8]>>>,
    issuer: String,
    algorithm: &'static str,
    every: Duration,
) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if let Err(error) = keys.tick().await {
            tracing::warn!(%error, "key maintenance failed; will retry");
        }
        match store.all_client_scopes().await {
            Ok(scopes) => {
                let doc = http::metadata_document(&issuer, &scopes, algorithm);
                match metadata.write() {
                    Ok(mut guard) => *guard = doc,
                    Err(poisoned) => *poisoned.into_inner() = doc,
                }
            }
            Err(error) => tracing::warn!(%error, "could not refresh metadata"),
        }
    }
}

/// Reloads the key set as soon as another process changed it (`tessera key rotate --now`,
/// `retire`, `revoke`, or another instance's rotation): woken by NOTIFY on Postgres, and on
/// both backends by a one-row summary of the key table read every [`KEY_POLL`].
async fn key_watch_loop(store: Store, keys: Arc<KeyRing>) {
    // None: the first look reloads, covering a change made while the ring was starting.
    let mut seen = None;
    loop {
        tokio::select! {
            () = store.key_change_announced() => {}
            () = tokio::time::sleep(KEY_POLL) => {}
        }
        let marker = match store.key_change_marker().await {
            Ok(marker) => marker,
            Err(error) => {
                tracing::debug!(%error, "key change poll failed; will retry");
                continue;
            }
        };
        if seen == Some(marker) {
            continue;
        }
        match keys.reload().await {
            Ok(()) => {
                tracing::info!("signing keys changed; reloaded");
                seen = Some(marker);
            }
            Err(error) => tracing::warn!(%error, "could not reload changed keys; will retry"),
        }
    }
}

/// How often each instance looks for key changes made elsewhere.
const KEY_POLL: Duration = Duration::from_millis(500);
