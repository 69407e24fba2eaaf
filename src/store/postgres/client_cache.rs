//! Client records kept in memory, so that authenticating a client costs no round
//! trip. Every change to a client NOTIFYs [`CHANNEL`] inside its transaction (whichever
//! instance or CLI made it), and each server LISTENs and drops the entry when the change
//! commits. While the listening connection is down the cache is empty and bypassed, so a
//! notification missed during an outage cannot leave a stale client behind. A heartbeat
//! NOTIFY every [`HEARTBEAT`] tells a silently cut connection from a quiet one, and entries
//! expire after [`MAX_AGE`] regardless. Unknown client ids are never cached (callers choose
//! them). LISTEN needs a session: behind a transaction-pooling proxy (pgbouncer in
//! transaction mode) no notification arrives, the heartbeat is never heard, and the cache
//! stays off.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};

use crate::store::ClientRecord;

/// The NOTIFY channel of client changes; the payload is the client id.
pub(super) const CHANNEL: &str = "tessera_clients";
/// The NOTIFY channel of key changes; the payload is the kid.
pub(super) const KEY_CHANNEL: &str = "tessera_keys";
const MAX_AGE: Duration = Duration::from_secs(30);
/// Far above any real number of clients; only a bound on memory.
const MAX_ENTRIES: usize = 10_000;

#[derive(Default)]
pub struct ClientCache {
    inner: RwLock<Inner>,
}

impl std::fmt::Debug for ClientCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.read();
        f.debug_struct("ClientCache")
            .field("live", &inner.live)
            .field("entries", &inner.entries.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    /// True while the listener is connected and LISTENing.
    live: bool,
    /// Bumped by every invalidation, so a lookup that raced a change does not store what it
    /// read before the change.
    generation: u64,
    entries: HashMap<String, (ClientRecord, Instant)>,
}

impl ClientCache {
    pub(super) fn get(&self, client_id: &str) -> Option<ClientRecord> {
        let inner = self.read();
        if !inner.live {
            return None;
        }
        let (record, at) = inner.entries.get(client_id)?;
        (at.elapsed() < MAX_AGE).then(|| record.clone())
    }

    /// Take before reading a client from the database; `None` while the cache is bypassed.
    pub(super) fn generation(&self) -> Option<u64> {
        let inner = self.read();
        inner.live.then_some(inner.generation)
    }

    /// Stores what was read under `generation`, unless something changed since.
    pub(super) fn put(&self, generation: u64, record: &ClientRecord) {
        let mut inner = self.write();
        if !inner.live || inner.generation != generation {
            return;
        }
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        inner
            .entries
            .insert(record.client_id.clone(), (record.clone(), Instant::now()));
    }

    fn invalidate(&self, client_id: &str) {
        let mut inner = self.write();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.remove(client_id);
    }

    /// Empties the cache and turns it on or off (listener connected or not).
    fn reset(&self, live: bool) {
        let mut inner = self.write();
        inner.generation = inner.generation.wrapping_add(1);
        inner.entries.clear();
        inner.live = live;
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// How often each server NOTIFYs an empty payload to itself (and the others) on [`CHANNEL`].
/// A listener that hears none for three periods is taken for cut off, even when its socket
/// does not say so (a NAT or firewall that dropped the connection silently).
const HEARTBEAT: Duration = Duration::from_secs(2);

/// Keeps `cache` in step with the database for as long as it runs: LISTENs on [`CHANNEL`],
/// and starts over a second after the listener is lost or the pool has moved to another host
/// (`moved`). The same session hears key changes ([`KEY_CHANNEL`]) and passes them on to
/// `key_changes`.
pub(super) async fn listen(
    cache: Arc<ClientCache>,
    key_changes: Arc<tokio::sync::Notify>,
    pool: PgPool,
    moved: Arc<tokio::sync::Notify>,
) {
    loop {
        let lost = tokio::select! {
            lost = follow(&cache, &key_changes, &pool) => lost,
            // The pool moved to another host (a failover): notifications are sent there now.
            () = moved.notified() => "the database primary moved".to_owned(),
        };
        cache.reset(false);
        tracing::debug!(reason = %lost, "client cache off");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Applies notifications to `cache` until the listener is lost; returns why.
async fn follow(cache: &ClientCache, key_changes: &tokio::sync::Notify, pool: &PgPool) -> String {
    // A connection of its own, as the pool's connections come and go: a pool of one, as
    // `PgListener::connect` makes from a URL.
    let own = PgPoolOptions::new()
        .max_connections(1)
        // sqlx retries a refused connection until this passes, on the options it started
        // with: after a failover those name the old primary, so give up as soon as the main
        // pool would and start over on the host it follows now.
        .acquire_timeout(pool.options().get_acquire_timeout())
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with((*pool.connect_options()).clone());
    let mut listener = match PgListener::connect_with(&own).await {
        Ok(listener) => listener,
        Err(error) => return format!("cannot connect: {error}"),
    };
    if let Err(error) = listener.listen_all([CHANNEL, KEY_CHANNEL]).await {
        return format!("LISTEN failed: {error}");
    }
    // Told at once when the connection drops (by default sqlx would first try to reconnect,
    // for up to its pool timeout, with the cache still on).
    listener.eager_reconnect(false);
    // The listener runs in its own task, so that the heartbeat check never cancels a receive
    // halfway through a message.
    let (notes, mut received) = tokio::sync::mpsc::channel::<(bool, String)>(1024);
    let reader = tokio::spawn(async move {
        while let Ok(Some(note)) = listener.try_recv().await {
            let about_keys = note.channel() == KEY_CHANNEL;
            if notes
                .send((about_keys, note.payload().to_owned()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let _reader = AbortOnDrop(reader);
    let mut beat = tokio::time::interval(HEARTBEAT);
    let mut last_heard = Instant::now();
    let mut on = false;
    loop {
        tokio::select! {
            note = received.recv() => match note {
                None => return "listener connection lost".into(),
                Some((true, _kid)) => key_changes.notify_one(),
                Some((false, client_id)) => {
                    last_heard = Instant::now();
                    // On only once a notification has made the round trip: a LISTEN that
                    // hears nothing (a transaction-pooling proxy) never turns the cache on.
                    if !on {
                        cache.reset(true);
                        on = true;
                        tracing::debug!("client cache on");
                    }
                    if !client_id.is_empty() {
                        cache.invalidate(&client_id);
                    }
                }
            },
            _ = beat.tick() => {
                if last_heard.elapsed() > 3 * HEARTBEAT {
                    return "no heartbeat heard".into();
                }
                let pool = pool.clone();
                tokio::spawn(async move {
                    // Through the pool: while the database is unreachable this fails, no
                    // heartbeat comes back, and the cache turns itself off.
                    let _ = sqlx::query("SELECT pg_notify($1, '')")
                        .bind(CHANNEL)
                        .execute(&pool)
                        .await;
                });
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str, name: &str) -> ClientRecord {
        ClientRecord {
            client_id: id.into(),
            name: name.into(),
            secret_hash: None,
            grant_types: vec![],
            scopes: vec![],
            audiences: vec![],
            access_ttl: None,
            introspect: false,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            first_party: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn bypassed_until_the_listener_is_live() {
        let cache = ClientCache::default();
        assert_eq!(cache.generation(), None);
        cache.put(0, &client("a", "A"));
        assert!(cache.get("a").is_none());
        cache.reset(true);
        let generation = cache.generation().expect("live");
        cache.put(generation, &client("a", "A"));
        assert_eq!(cache.get("a").map(|c| c.name), Some("A".into()));
        cache.reset(false);
        assert!(
            cache.get("a").is_none(),
            "emptied when the listener is lost"
        );
    }

    #[test]
    fn a_read_that_raced_a_change_is_not_stored() {
        let cache = ClientCache::default();
        cache.reset(true);
        let before = cache.generation().expect("live");
        cache.invalidate("a");
        cache.put(before, &client("a", "old"));
        assert!(cache.get("a").is_none());
    }

    #[test]
    fn a_change_drops_the_entry() {
        let cache = ClientCache::default();
        cache.reset(true);
        let generation = cache.generation().expect("live");
        cache.put(generation, &client("a", "A"));
        cache.put(generation, &client("b", "B"));
        cache.invalidate("a");
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some());
    }
}
