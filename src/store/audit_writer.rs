//! Audit events that accompany no state change (failed logins, issued client_credentials
//! tokens, refused requests) are written in batches off the request path: one multi-row INSERT
//! per flush instead of one commit per request. Events that go with a state change are still
//! written in that change's transaction.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::Store;
use super::audit::{AuditEvent, MAX_BATCH};

/// Events waiting to be written; past this the newest are dropped (and counted) rather than
/// slowing requests, which only happens while the database is unreachable.
const QUEUE: usize = 20_000;

#[derive(Clone, Debug)]
pub struct AuditWriter {
    queue: mpsc::Sender<AuditEvent>,
}

impl AuditWriter {
    /// Starts the writer task; it ends, after a last flush, when every writer is dropped.
    pub fn spawn(store: Store, flush_every: Duration) -> (Self, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(store, rx, flush_every));
        (Self { queue }, task)
    }

    pub fn write(&self, events: &[AuditEvent]) {
        for event in events {
            if self.queue.try_send(event.clone()).is_err() {
                metrics::counter!("tessera_audit_dropped_total").increment(1);
                log_drop_once_per_second();
            }
        }
    }
}

/// One error line per second at most, however many events are dropped.
fn log_drop_once_per_second() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    static LAST: AtomicU64 = AtomicU64::new(u64::MAX);
    let second = START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs();
    if LAST.swap(second, Ordering::Relaxed) != second {
        tracing::error!(
            "audit queue full: events are being dropped (see tessera_audit_dropped_total)"
        );
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<AuditEvent>, flush_every: Duration) {
    let mut batch: Vec<AuditEvent> = Vec::with_capacity(MAX_BATCH);
    loop {
        match rx.recv().await {
            Some(event) => batch.push(event),
            None => return,
        }
        let deadline = tokio::time::sleep(flush_every);
        tokio::pin!(deadline);
        let mut closed = false;
        while batch.len() < MAX_BATCH {
            tokio::select! {
                event = rx.recv() => match event {
                    Some(event) => batch.push(event),
                    None => { closed = true; break; }
                },
                () = &mut deadline => break,
            }
        }
        // A failed flush is retried: events are not lost to a short database outage.
        let mut attempt = 0u32;
        while let Err(error) = store.record(&batch).await {
            attempt += 1;
            tracing::warn!(%error, rows = batch.len(), attempt, "audit flush failed; retrying");
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
            if closed && attempt >= 5 {
                tracing::error!(rows = batch.len(), "audit rows lost at shutdown");
                return;
            }
        }
        batch.clear();
        if closed {
            return;
        }
    }
}
