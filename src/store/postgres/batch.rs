//! Requests that arrive together share one statement on Postgres. Per-statement costs (a round
//! trip, parse/bind/execute, executor start-up, and for writes a commit with its WAL flush)
//! dominate the small reads and writes of introspection and refresh rotation; one statement
//! over many requests pays them once.
//!
//! One task collects what has queued and hands it to the statement as one batch. Only
//! [`Batcher::start`]'s `usual` number of statements run at a time: requests that arrive
//! meanwhile wait and join the next one, which is what makes batches grow with load. At low load
//! a batch holds one request and costs what a statement of its own did. Every request joins a
//! statement that starts after it was asked, so it sees every change committed before it
//! arrived. So that one stalled connection cannot hold up everything, a batch that has waited
//! [`STALL`] for a slot starts beside the running statements, up to [`IN_FLIGHT`] at once.
//!
//! Waiting for a slot and for a connection is bounded by the pool's acquire timeout, counted
//! from the oldest request in the batch (those already past it are answered 503 at once), so an
//! outage answers as fast as a statement of one's own would. Running the statement is not
//! bounded here, as it is not for a statement of one's own: a write must not be abandoned
//! after it may have committed, and an abandoned read would keep its connection busy anyway.
//!
//! Should the collecting task be gone, [`Batcher::ask`] hands the request back and the caller
//! runs its statement alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::store::StoreError;

/// Most statements running at once, counting those past [`STALL`].
const IN_FLIGHT: usize = 4;
/// How long the next batch waits for a running statement before it starts beside it.
const STALL: Duration = Duration::from_millis(20);
/// Most bytes of parameters in one statement, by the batcher's own estimate: under one TLS
/// record, so that a batch goes out in one write. A bigger message went out in two writes, the
/// second waiting for the server's delayed ACK of the first when Nagle's algorithm was on, and
/// every connection of the refresh scenario stalled together (BENCHMARKS.md, "batch parameters
/// kept under one TLS record").
const MAX_BYTES: usize = 12 * 1024;
/// Requests waiting for a batch; a full queue makes callers wait, not fail.
const QUEUE: usize = 8_192;

/// An item's share of [`MAX_BYTES`].
pub(super) type Weigh<I> = fn(&I) -> usize;

/// Runs one batch on one connection; answers in the order of the items.
pub(super) type Run<I, A> =
    for<'c> fn(&'c mut PgConnection, &'c [I]) -> BoxFuture<'c, Result<Vec<A>, StoreError>>;

struct Pending<I, A> {
    item: I,
    asked: Instant,
    reply: oneshot::Sender<Result<A, StoreError>>,
}

/// The asking side; cheap to clone. The task ends when every clone is dropped.
pub(super) struct Batcher<I, A> {
    queue: mpsc::Sender<Pending<I, A>>,
}

impl<I, A> Clone for Batcher<I, A> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<I, A> std::fmt::Debug for Batcher<I, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").finish_non_exhaustive()
    }
}

impl<I: Send + Sync + 'static, A: Send + 'static> Batcher<I, A> {
    /// `name` labels the metrics; `usual` is how many statements run at once before [`STALL`].
    pub(super) fn start(
        pool: PgPool,
        name: &'static str,
        usual: usize,
        weigh: Weigh<I>,
        run: Run<I, A>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = collect(pool, name, usual, weigh, run, rx);
        (Self { queue }, task)
    }

    /// The answer from a shared statement, or the item back when no task collects any more.
    pub(super) async fn ask(&self, item: I) -> Result<Result<A, StoreError>, I> {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            item,
            asked: Instant::now(),
            reply,
        };
        if let Err(mpsc::error::SendError(pending)) = self.queue.send(pending).await {
            tracing::error!("the statement batching task has stopped; running statements alone");
            return Err(pending.item);
        }
        // Dropped unanswered only if the batch's task panicked: whether a write committed is
        // unknown, as after a lost connection.
        Ok(answer
            .await
            .unwrap_or(Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed))))
    }
}

async fn collect<I: Send + Sync + 'static, A: Send + 'static>(
    pool: PgPool,
    name: &'static str,
    usual: usize,
    weigh: Weigh<I>,
    run: Run<I, A>,
    mut rx: mpsc::Receiver<Pending<I, A>>,
) {
    // Taken from the queue but over the budget: it opens the next batch.
    let mut held: Option<Pending<I, A>> = None;
    let usual_slots = Arc::new(Semaphore::new(usual.max(1)));
    let spare_slots = Arc::new(Semaphore::new(IN_FLIGHT.saturating_sub(usual).max(1)));
    let patience = pool.options().get_acquire_timeout();
    loop {
        let first = match held.take() {
            Some(first) => first,
            None => match rx.recv().await {
                Some(first) => first,
                None => return,
            },
        };
        // Every slot may be held by a statement stuck on a lock or a dead connection: a request
        // is not kept past its deadline waiting for one.
        let deadline = tokio::time::Instant::from_std(first.asked + patience);
        let slot = tokio::select! {
            biased;
            slot = usual_slots.clone().acquire_owned() => slot,
            slot = async {
                tokio::time::sleep(STALL).await;
                spare_slots.clone().acquire_owned().await
            } => slot,
            () = tokio::time::sleep_until(deadline) => {
                let _ = first.reply.send(Err(timed_out()));
                continue;
            }
        };
        let Ok(slot) = slot else {
            return;
        };
        let mut bytes = weigh(&first.item);
        let mut batch = vec![first];
        while let Ok(next) = rx.try_recv() {
            bytes += weigh(&next.item);
            if bytes > MAX_BYTES {
                held = Some(next);
                break;
            }
            batch.push(next);
        }
        let pool = pool.clone();
        tokio::spawn(async move {
            answer(&pool, name, run, batch, patience).await;
            drop(slot);
        });
    }
}

async fn answer<I, A>(
    pool: &PgPool,
    name: &'static str,
    run: Run<I, A>,
    batch: Vec<Pending<I, A>>,
    patience: Duration,
) {
    metrics::counter!("tessera_batched_statements_total", "kind" => name).increment(1);
    metrics::counter!("tessera_batched_requests_total", "kind" => name)
        .increment(batch.len() as u64);
    // A caller that has gone (its client disconnected) is not acted for: a rotation nobody
    // receives would only make the client's retry look like reuse.
    let (batch, expired): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .filter(|p| !p.reply.is_closed())
        .partition(|p| p.asked.elapsed() < patience);
    for pending in expired {
        let _ = pending.reply.send(Err(timed_out()));
    }
    let Some(oldest) = batch.iter().map(|p| p.asked).min() else {
        return;
    };
    let left = patience.saturating_sub(oldest.elapsed());
    let (items, replies): (Vec<I>, Vec<_>) = batch.into_iter().map(|p| (p.item, p.reply)).unzip();
    let outcome = match tokio::time::timeout(left, pool.acquire()).await {
        Ok(Ok(mut conn)) => match run(&mut conn, &items).await {
            // A deadlock or serialization failure rolled the whole statement back, so running
            // it again is safe; without this every request sharing it would fail.
            Err(StoreError::Backend(sqlx::Error::Database(e)))
                if matches!(e.code().as_deref(), Some("40P01" | "40001")) =>
            {
                run(&mut conn, &items).await
            }
            outcome => outcome,
        },
        Ok(Err(e)) => Err(StoreError::before_sending(e)),
        Err(_) => Err(timed_out()),
    };
    reply_all(replies, outcome);
}

fn timed_out() -> StoreError {
    StoreError::Unreachable(sqlx::Error::PoolTimedOut)
}

/// Hands each caller its own answer; a caller left without one gets an error, never another's.
fn reply_all<A>(
    replies: Vec<oneshot::Sender<Result<A, StoreError>>>,
    outcome: Result<Vec<A>, StoreError>,
) {
    match outcome {
        Ok(answers) => {
            let mut answers = answers.into_iter();
            for reply in replies {
                let answer = answers.next().ok_or_else(|| {
                    StoreError::Backend(sqlx::Error::Protocol("a batch answered short".into()))
                });
                let _ = reply.send(answer);
            }
        }
        Err(err) => {
            for reply in replies {
                let _ = reply.send(Err(err.for_another_caller()));
            }
        }
    }
}

/// The items as one JSON array parameter, each numbered by its place (`i`) so that the
/// statement's rows can say whose they are.
pub(super) fn numbered_json<I: Serialize>(items: &[I]) -> Result<String, StoreError> {
    #[derive(Serialize)]
    struct Numbered<'a, I> {
        i: usize,
        #[serde(flatten)]
        item: &'a I,
    }
    let rows: Vec<Numbered<I>> = items
        .iter()
        .enumerate()
        .map(|(i, item)| Numbered { i, item })
        .collect();
    serde_json::to_string(&rows).map_err(|e| StoreError::Config(format!("batch parameter: {e}")))
}

/// Puts each numbered answer in its item's place; places no row named keep `missing`, and
/// numbers out of range are ignored, so no caller can get another's answer.
pub(super) fn by_number<A>(
    count: usize,
    missing: fn() -> A,
    rows: impl IntoIterator<Item = (i64, A)>,
) -> Vec<A> {
    let mut answers: Vec<A> = (0..count).map(|_| missing()).collect();
    for (i, answer) in rows {
        if let Some(slot) = usize::try_from(i).ok().and_then(|i| answers.get_mut(i)) {
            *slot = answer;
        }
    }
    answers
}

impl StoreError {
    /// The same failure, for each of the callers that shared a statement (sqlx errors are not
    /// `Clone`); what matters downstream is the variant, which decides between 503 and 500.
    pub(in crate::store) fn for_another_caller(&self) -> Self {
        match self {
            // Whether the statement may have run is kept: a rotation whose answer was lost
            // looks for its own outcome, one that never ran does not.
            Self::Unreachable(sqlx::Error::PoolTimedOut) => timed_out(),
            Self::Unreachable(e) => Self::Unreachable(sqlx::Error::Protocol(e.to_string())),
            Self::Unavailable(e) => Self::Unavailable(sqlx::Error::Protocol(e.to_string())),
            other => Self::Backend(sqlx::Error::Protocol(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_go_to_their_own_places_only() {
        let rows = [(2, "c"), (0, "a"), (7, "x"), (-1, "y")];
        assert_eq!(by_number(4, || "-", rows), ["a", "-", "c", "-"]);
        assert_eq!(by_number(0, || "-", [(0, "a")]), Vec::<&str>::new());
    }

    #[test]
    fn items_are_numbered_in_order() {
        #[derive(Serialize)]
        struct Item {
            name: &'static str,
        }
        let json = numbered_json(&[Item { name: "a" }, Item { name: "b\u{0}\"" }]).expect("json");
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("parses");
        assert_eq!(parsed[0]["i"], 0);
        assert_eq!(parsed[1]["i"], 1);
        assert_eq!(parsed[1]["name"], "b\u{0}\"");
    }
}
