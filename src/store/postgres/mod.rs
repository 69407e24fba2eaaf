//! The Postgres store: the shared statements, plus the fast paths only Postgres has. Clients
//! are cached in memory and kept current by LISTEN/NOTIFY ([`client_cache`]); concurrent
//! introspection checks and refresh rotations share statements ([`batch`]); a rotation and a
//! login's family are one statement each ([`rotation`]); the audit log is partitioned by day
//! ([`audit_partitions`]).

mod access_checks;
mod audit_partitions;
mod batch;
mod client_cache;
mod hosts;
mod primary;
mod rotation;
mod rotation_batch;

use std::sync::Arc;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::PoolOptions;
use super::prelude::*;
use client_cache::ClientCache;
use hosts::Hosts;
use primary::Primary;
pub use primary::READ_ONLY_HOST_REFUSED;
use rotation::CHECK_USER_UNCHANGED;

/// A login session's user, held until the transaction ends. Taken before the session row:
/// a password change, disable or delete locks the user, then the sessions, and a redemption
/// must lock in that order too, or the two deadlock.
const LOCK_SESSION_USER: &str = "SELECT 1 FROM users \
     WHERE id = (SELECT user_id FROM browser_sessions WHERE id = $1) FOR SHARE";

/// A login session's row, held for a change (a new sign-in taking it over).
const LOCK_SESSION: &str = "SELECT id FROM browser_sessions WHERE id = $1 FOR UPDATE";

/// A login session still live and its user unchanged since the sign-in, the session row held
/// until the transaction ends (a logout waits for it; the user is held already).
const CHECK_SESSION_LIVE: &str = "SELECT s.id FROM browser_sessions s \
     JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND s.revoked_at IS NULL \
     AND s.expires_at > $2 AND u.disabled = 0 AND u.password_changed_at <= s.auth_time \
     FOR SHARE OF s";

type Db = sqlx::Postgres;
type Conn = sqlx::PgConnection;

pub(super) static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Clone, Debug)]
pub struct PgStore {
    pub(super) pool: PgPool,
    /// Off (bypassed) until [`PgStore::follow_changes`] hears its own notification.
    clients: Arc<ClientCache>,
    access_checks: access_checks::AccessChecker,
    rotations: rotation_batch::Rotations,
    /// Woken by a key change another process announced (heard by the same listener).
    key_changes: Arc<tokio::sync::Notify>,
    /// The host the pool connects to, among those the URL names.
    primary: Arc<Primary>,
    /// How long a rotation whose answer was lost keeps trying to settle.
    pub(super) settle_timeout: Duration,
}

impl PgStore {
    /// Connects and starts the statement batchers (their tasks end with the last clone).
    pub(super) async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let idle_in_transaction = options.idle_in_transaction_timeout;
        let hosts = Hosts::parse(url)?;
        // With several hosts, the pool starts on the first that takes writes; a single host is
        // used as it is, its sessions checked as they open.
        let first = if hosts.candidates.len() > 1 {
            hosts
                .find(options.acquire_timeout)
                .await
                .map_err(StoreError::NoPrimary)?
        } else {
            0
        };
        let connect_options = hosts.candidates[first].clone();
        let primary = Arc::new(Primary::new(hosts, first, options.acquire_timeout));
        let (admitting, fencing) = (primary.clone(), primary.clone());
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            // sqlx pings every connection it hands out; that is a full round trip per query
            // on the hot path. A dead connection fails its first statement instead, which the
            // request answers with 503 while sqlx drops the connection.
            .test_before_acquire(false)
            // No round trip: a connection opened before the pool moved to another host is
            // closed instead of handed out.
            .before_acquire(move |_conn, meta| {
                let current = fencing.is_current(meta.age);
                Box::pin(async move { Ok(current) })
            })
            .after_connect(move |conn, _meta| {
                let primary = admitting.clone();
                Box::pin(async move {
                    primary.admits(&mut *conn).await?;
                    // Tessera never waits inside a transaction for anything but the database,
                    // so a session idle in one is an instance or a network that is gone; its
                    // row locks would otherwise hold up every request for those rows until
                    // TCP gives up on it.
                    if !idle_in_transaction.is_zero() {
                        sqlx::query(
                            "SELECT set_config('idle_in_transaction_session_timeout', $1, false)",
                        )
                        .bind(format!("{}ms", idle_in_transaction.as_millis().max(1)))
                        .execute(&mut *conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options)
            .await
            .map_err(StoreError::connecting)?;
        let (access_checks, checking) = access_checks::start(pool.clone());
        let (rotations, rotating) = rotation_batch::start(pool.clone());
        tokio::spawn(checking);
        tokio::spawn(rotating);
        Ok(Self {
            pool,
            clients: Arc::default(),
            access_checks,
            rotations,
            key_changes: Arc::default(),
            primary,
            settle_timeout: options.settle_timeout,
        })
    }

    /// What a serving instance runs beside its requests: the listener behind the client cache
    /// and key-change wake-ups, and with several hosts, the watch that follows the primary.
    pub(super) fn follow_changes(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(client_cache::listen(
            self.clients.clone(),
            self.key_changes.clone(),
            self.pool.clone(),
            self.primary.moved(),
        ))];
        if self.primary.has_choices() {
            tasks.push(tokio::spawn(primary::follow(
                self.primary.clone(),
                self.pool.clone(),
            )));
        }
        tasks
    }

    /// Whether the database answers; while the primary is being searched for, why not.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        if let Some(why) = self.primary.lost() {
            return Err(StoreError::NoPrimary(why));
        }
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub(super) async fn key_change_announced(&self) {
        self.key_changes.notified().await;
    }

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.pool.begin().await.map_err(StoreError::before_sending)
    }

    /// Tells every instance's client cache that `client_id` changed, when `tx` commits.
    async fn announce_client_change(
        &self,
        tx: &mut Conn,
        client_id: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(client_cache::CHANNEL)
            .bind(client_id)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Wakes every instance's key watch when `tx` commits.
    async fn announce_key_change(&self, tx: &mut Conn, kid: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(client_cache::KEY_CHANNEL)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// The client if the cache holds it; no database access.
    pub(super) fn cached_client(&self, client_id: &str) -> Option<ClientRecord> {
        let hit = self.clients.get(client_id);
        if hit.is_some() {
            metrics::counter!("tessera_client_lookups_total", "source" => "memory").increment(1);
        }
        hit
    }

    /// The client as the database has it now; the cache takes the answer too.
    pub(super) async fn find_client(
        &self,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, StoreError> {
        let generation = self.clients.generation();
        let record = self.read_client(client_id).await?;
        if let (Some(generation), Some(record)) = (generation, &record) {
            self.clients.put(generation, record);
        }
        Ok(record)
    }

    /// Checks of concurrent introspections share one statement.
    pub(super) async fn access_token_usable(&self, check: AccessCheck) -> Result<bool, StoreError> {
        // Postgres rejects NUL in JSON, which would fail every check sharing the statement.
        if holds_nul(&check) {
            return Ok(false);
        }
        let check = match self.access_checks.ask(check).await {
            Ok(answer) => return answer,
            Err(check) => check,
        };
        self.check_access_alone(&check).await
    }

    /// Rows older than the clean-up's cut-off that no day partition holds.
    fn audit_rows_table(&self) -> &'static str {
        "audit_log_default"
    }
}

impl PgStore {
    super::shared_statements!();
}

/// Every row count is the same statement text, eight array parameters, so it is prepared once
/// per connection; multi-row VALUES would be a new statement (parsed and planned) for each
/// batch size the audit writer happens to gather.
const INSERT_AUDIT_ROWS: &str = "INSERT INTO audit_log (at, actor, action, target, outcome, \
     username, client_id, details) SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], \
     $4::text[], $5::text[], $6::text[], $7::text[], $8::text[])";

async fn insert_audit_rows(conn: &mut Conn, events: &[AuditEvent]) -> Result<(), sqlx::Error> {
    let column = |field: fn(&AuditEvent) -> Option<&str>| -> Vec<Option<&str>> {
        events.iter().map(field).collect()
    };
    let at: Vec<i64> = events.iter().map(|e| e.at).collect();
    let details: Vec<String> = events.iter().map(|e| e.details.to_string()).collect();
    sqlx::query(INSERT_AUDIT_ROWS)
        .bind(at)
        .bind(column(|e| Some(&e.actor)))
        .bind(column(|e| Some(e.action)))
        .bind(column(|e| Some(&e.target)))
        .bind(column(|e| Some(e.outcome)))
        .bind(column(|e| e.username.as_deref()))
        .bind(column(|e| e.client_id.as_deref()))
        .bind(details)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_insert_names_the_shared_columns_in_their_order() {
        assert!(INSERT_AUDIT_ROWS.contains(&format!("audit_log ({COLUMNS}) SELECT")));
    }
}
