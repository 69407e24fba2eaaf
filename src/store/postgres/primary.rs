//! Following the writable host of a multi-host URL through a failover. The pool connects to
//! one host at a time ([`Primary::current`]); a watch connection of its own asks that host every
//! [`WATCH_EVERY`] whether it still takes writes, and when it does not (gone, or turned
//! read-only) the hosts are searched in the URL's order until one does. The pool is then
//! pointed at it, and every connection opened before the move is closed instead of handed
//! out, so that no request runs on the old host once the new one is known. Meanwhile requests
//! fail before sending anything (no connection), which callers answer with 503.
//!
//! A connection the pool opens is checked too (`after_connect`), so that a session on a
//! standby is never handed out even between two watches; a refused one wakes the watch.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnection, PgPool};
use tokio::sync::Notify;

use super::hosts::Hosts;

/// The error of a connection the pool opened on a host that does not take writes (a standby,
/// or a primary fenced read-only), refused in `after_connect`. Expected during a failover: the
/// exception tracker leaves it out.
pub const READ_ONLY_HOST_REFUSED: &str =
    "the database host is read-only (a standby); looking for the primary";

/// How often the watch asks the current host whether it still takes writes.
const WATCH_EVERY: Duration = Duration::from_secs(1);
/// Between two searches that found no writable host.
const SEARCH_AGAIN: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub(super) struct Primary {
    pub(super) hosts: Hosts,
    /// The candidate the pool connects to.
    current: AtomicUsize,
    /// When the pool last moved (or found its host again after losing it), in milliseconds
    /// since `epoch`; connections opened before are closed rather than handed out.
    fence_ms: AtomicU64,
    epoch: Instant,
    /// Why no host is in use, while the watch searches for one.
    lost: RwLock<Option<String>>,
    wake: Notify,
    /// Told of every move, so that the LISTEN connection starts over on the new host at once
    /// rather than when its heartbeat goes unheard.
    moved: Arc<Notify>,
    /// How long one host may take to connect and answer, in a search.
    patience: Duration,
}

impl Primary {
    pub(super) fn new(hosts: Hosts, current: usize, patience: Duration) -> Self {
        Self {
            hosts,
            current: AtomicUsize::new(current),
            fence_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            lost: RwLock::new(None),
            wake: Notify::new(),
            moved: Arc::default(),
            patience,
        }
    }

    /// Whether the URL names several hosts, so that there is a primary to follow.
    pub(super) fn has_choices(&self) -> bool {
        self.hosts.candidates.len() > 1
    }

    /// Notified whenever the pool moves to another host.
    pub(super) fn moved(&self) -> Arc<Notify> {
        self.moved.clone()
    }

    /// Why no host is in use now, while a search is under way.
    pub(super) fn lost(&self) -> Option<String> {
        self.lost.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_lost(&self, why: Option<String>) {
        *self.lost.write().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// For the pool's `after_connect`: whether a new connection's session is usable; one that
    /// is not wakes the watch, since the host the pool connects to is no longer the primary.
    pub(super) async fn admits(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.hosts.target.accepts(conn).await? {
            return Ok(());
        }
        self.wake.notify_one();
        Err(sqlx::Error::Protocol(READ_ONLY_HOST_REFUSED.into()))
    }

    /// For the pool's `before_acquire`: false for a connection opened before the last move.
    pub(super) fn is_current(&self, age: Duration) -> bool {
        let opened = self.epoch.elapsed().saturating_sub(age);
        opened.as_millis() as u64 >= self.fence_ms.load(Ordering::Acquire)
    }

    /// Points `pool` at candidate `index` and fences off every connection opened before.
    fn move_to(&self, pool: &PgPool, index: usize) {
        let previous = self.current.swap(index, Ordering::AcqRel);
        if previous != index {
            pool.set_connect_options(self.hosts.candidates[index].clone());
            self.moved.notify_waiters();
            metrics::counter!("tessera_database_primary_changes_total").increment(1);
            tracing::warn!(
                from = %self.hosts.name(previous),
                to = %self.hosts.name(index),
                "the database primary moved; following it"
            );
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        self.fence_ms.store(now, Ordering::Release);
    }

    /// Searches until a host takes writes, then points `pool` at it.
    async fn search(&self, pool: &PgPool, why: String) {
        tracing::warn!(reason = %why, "lost the database primary; searching the hosts");
        self.set_lost(Some(why));
        let started = Instant::now();
        loop {
            match self.hosts.find(self.patience).await {
                Ok(index) => {
                    self.move_to(pool, index);
                    self.set_lost(None);
                    tracing::warn!(
                        host = %self.hosts.name(index),
                        after_ms = started.elapsed().as_millis() as u64,
                        "database primary found"
                    );
                    return;
                }
                Err(why) => {
                    tracing::debug!(reason = %why, "no writable database host yet");
                    self.set_lost(Some(format!("no writable host: {why}")));
                    tokio::time::sleep(SEARCH_AGAIN).await;
                }
            }
        }
    }

    /// Whether `watch` (opened on the current host when `None`) still takes writes.
    async fn still_primary(&self, watch: &mut Option<PgConnection>) -> Result<(), String> {
        let check = async {
            if watch.is_none() {
                let index = self.current.load(Ordering::Acquire);
                let options = &self.hosts.candidates[index];
                *watch = Some(options.connect().await.map_err(|e| e.to_string())?);
            }
            let Some(conn) = watch.as_mut() else {
                return Err("no watch connection".to_owned());
            };
            match self.hosts.target.accepts(conn).await {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!(
                    "{} is read-only",
                    self.hosts.name(self.current.load(Ordering::Acquire))
                )),
                Err(e) => Err(e.to_string()),
            }
        };
        let checked = tokio::time::timeout(self.patience, check)
            .await
            .unwrap_or_else(|_| Err("the primary did not answer in time".into()));
        if checked.is_err()
            && let Some(conn) = watch.take()
        {
            // Closing politely could wait on a host that is gone.
            drop(conn);
        }
        checked
    }
}

/// Keeps `pool` on the writable host for as long as it runs (a serving instance's task).
pub(super) async fn follow(primary: Arc<Primary>, pool: PgPool) {
    let mut watch: Option<PgConnection> = None;
    let mut ticker = tokio::time::interval(WATCH_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = primary.wake.notified() => {}
        }
        // A failed check has dropped the watch connection; the next opens one on the new host.
        if let Err(why) = primary.still_primary(&mut watch).await {
            primary.search(&pool, why).await;
        }
    }
}
