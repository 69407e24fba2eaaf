//! Audit events that accompany no state change (failed logins, issued client_credentials
//! tokens, refused requests) are written in shared multi-row INSERTs, off the request's own
//! connection. By default a request waits until its events have committed, so an answer the
//! caller sees was audited; the README's "Audit log" says what `audit.on_overload` trades.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::audit::{AuditEvent, MAX_BATCH};
use super::{Store, StoreError};

/// What a request does when its audit events cannot be written at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnOverload {
    /// The request waits for its events' commit and fails (503) if they cannot be written in
    /// time: nothing the caller was told about goes unaudited.
    Wait,
    /// The request goes on at once; events queue in memory and the newest are dropped (and
    /// counted) when the queue is full. Events still queued are lost if the process dies.
    Drop,
}

/// How the writer runs.
#[derive(Debug, Clone, Copy)]
pub struct WriterOptions {
    pub on_overload: OnOverload,
    /// Most INSERTs running at once. One runs at a time while it keeps up (so batches grow
    /// with load); another starts beside it only after the next batch has waited [`STALL`].
    pub writers: usize,
    /// `Drop` only: how long events may gather before they are written.
    pub linger: Duration,
    /// `Wait` only: the longest a request waits for its events' commit.
    pub patience: Duration,
}

/// Requests (not events) waiting; with `Wait` a full queue makes callers wait.
const QUEUE: usize = 20_000;
/// How long the next batch waits for the running INSERT before it starts beside it. One
/// writer at a time makes the fewest, largest statements, each a commit (the bench's
/// client_credentials scenario compares 1, 2 and 4 at once); a slow or stuck one must not hold
/// everything up.
const STALL: Duration = Duration::from_millis(10);

struct Pending {
    events: Vec<AuditEvent>,
    /// `None` for a caller that does not wait (`OnOverload::Drop`).
    reply: Option<oneshot::Sender<Result<(), StoreError>>>,
}

#[derive(Clone)]
pub struct AuditWriter {
    queue: mpsc::Sender<Pending>,
    options: WriterOptions,
}

impl std::fmt::Debug for AuditWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditWriter")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Starts the writer task; it ends, after writing what was queued, when every writer is
    /// dropped.
    pub fn spawn(store: Store, options: WriterOptions) -> (Self, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(collect(store, options, rx));
        (Self { queue, options }, task)
    }

    /// Records `events`. With [`OnOverload::Wait`] this returns once they have committed, or
    /// with an error once they cannot be (the caller must then fail its request); with
    /// [`OnOverload::Drop`] it returns at once.
    pub async fn write(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        match self.options.on_overload {
            OnOverload::Drop => {
                let pending = Pending {
                    events: events.to_vec(),
                    reply: None,
                };
                if self.queue.try_send(pending).is_err() {
                    metrics::counter!("tessera_audit_dropped_total").increment(events.len() as u64);
                    log_drop_once_per_second();
                }
                Ok(())
            }
            OnOverload::Wait => {
                let (reply, answer) = oneshot::channel();
                let pending = Pending {
                    events: events.to_vec(),
                    reply: Some(reply),
                };
                let wait = async {
                    self.queue
                        .send(pending)
                        .await
                        .map_err(|_| StoreError::Config("the audit writer has stopped".into()))?;
                    answer.await.unwrap_or_else(|_| {
                        Err(StoreError::Config("the audit writer has stopped".into()))
                    })
                };
                match tokio::time::timeout(self.options.patience, wait).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        metrics::counter!("tessera_audit_timeouts_total").increment(1);
                        Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut))
                    }
                }
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
            "audit queue full (audit.on_overload = \"drop\"): events are being dropped \
             (see tessera_audit_dropped_total)"
        );
    }
}

/// Takes a writer slot first and only then gathers what has queued: while the writer is busy,
/// requests accumulate, so batches grow with load and an idle server writes at once.
async fn collect(store: Store, options: WriterOptions, mut rx: mpsc::Receiver<Pending>) {
    let usual = Arc::new(Semaphore::new(1));
    let spare = Arc::new(Semaphore::new(options.writers.saturating_sub(1)));
    let mut held: Option<Pending> = None;
    let mut tasks = tokio::task::JoinSet::new();
    let closed = Arc::new(AtomicBool::new(false));
    loop {
        let first = match held.take() {
            Some(first) => first,
            None => match rx.recv().await {
                Some(first) => first,
                None => break,
            },
        };
        let slot = tokio::select! {
            biased;
            slot = usual.clone().acquire_owned() => slot,
            slot = async {
                tokio::time::sleep(STALL).await;
                spare.clone().acquire_owned().await
            } => slot,
        };
        let Ok(slot) = slot else {
            break;
        };
        if options.on_overload == OnOverload::Drop && !options.linger.is_zero() {
            tokio::time::sleep(options.linger).await;
        }
        let mut rows = first.events.len();
        let mut batch = vec![first];
        while rows < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) if rows + next.events.len() > MAX_BATCH => {
                    held = Some(next);
                    break;
                }
                Ok(next) => {
                    rows += next.events.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let store = store.clone();
        let closed = closed.clone();
        tasks.spawn(async move {
            flush(&store, options.on_overload, &closed, batch).await;
            drop(slot);
        });
        // Finished flushes are reaped as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    closed.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
}

async fn flush(store: &Store, on_overload: OnOverload, closed: &AtomicBool, batch: Vec<Pending>) {
    let rows: usize = batch.iter().map(|p| p.events.len()).sum();
    let mut events = Vec::with_capacity(rows);
    let mut replies = Vec::with_capacity(batch.len());
    for pending in batch {
        events.extend(pending.events);
        replies.extend(pending.reply);
    }
    metrics::counter!("tessera_audit_flushes_total").increment(1);
    match on_overload {
        OnOverload::Wait => {
            let outcome = store.record(&events).await;
            if let Err(error) = &outcome {
                tracing::warn!(%error, rows, "audit write failed; its requests fail");
            } else {
                metrics::counter!("tessera_audit_written_total").increment(rows as u64);
            }
            for reply in replies {
                let _ = reply.send(match &outcome {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e.for_another_caller()),
                });
            }
        }
        // Nobody waits: a failed write is retried, holding its slot so the queue fills and
        // overflow is counted as dropped rather than growing without bound.
        OnOverload::Drop => {
            let mut attempt = 0u32;
            while let Err(error) = store.record(&events).await {
                attempt += 1;
                if closed.load(Ordering::Relaxed) && attempt >= 5 {
                    metrics::counter!("tessera_audit_dropped_total").increment(rows as u64);
                    tracing::error!(%error, rows, "audit rows lost at shutdown");
                    return;
                }
                tracing::warn!(%error, rows, attempt, "audit write failed; retrying");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt.min(10)))).await;
            }
            metrics::counter!("tessera_audit_written_total").increment(rows as u64);
        }
    }
}
