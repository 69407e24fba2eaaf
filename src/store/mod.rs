//! All SQL lives here. One [`Store`] serves both backends through sqlx's `Any` driver: the
//! schema keeps to types both share (text ids, BIGINT Unix seconds, BYTEA/BLOB hashes), so
//! every statement is written once and the conformance tests run it on Postgres and SQLite.

mod access_checks;
mod audit;
mod audit_partitions;
mod audit_writer;
mod batch;
mod client_cache;
mod clients;
mod keys;
mod maintenance;
mod refresh;
mod roles;
mod rotation_batch;
mod sqlite_file;
mod throttle;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub use access_checks::AccessCheck;
pub use audit::{AuditEvent, AuditFilter, AuditRow};
pub use audit_writer::{AuditWriter, OnOverload, WriterOptions};
pub use clients::{ClientRecord, NewClient};
pub use keys::{KeyChangeMarker, StoredKey};
pub use maintenance::{GcCutoffs, GcReport};
pub use refresh::{
    FamilyRecord, FamilySummary, NewFamily, RefreshLookup, Rotation, RotationRequest,
};
pub use roles::RoleRecord;
pub use throttle::ThrottleState;
pub use users::{NewUser, UserRecord};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// One page of a listing: the rows that come after `after` (a listing's own cursor: a
/// username, a client id, a family id) in its order, at most `limit` of them.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub after: Option<String>,
    pub limit: i64,
}

/// `prefix` as a LIKE pattern that matches it literally at the start (escape character `\`).
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

impl Backend {
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else {
            Err(StoreError::Config(
                "database.url must start with postgres:// or sqlite:".into(),
            ))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("{0}")]
    Config(String),
    // The causes are part of the message, not `#[source]`s, so a printed chain says them once.
    #[error("database is unavailable: {0}")]
    Unavailable(sqlx::Error),
    /// Unavailable before any statement of the operation was sent (no connection, or `BEGIN`
    /// failed), so it cannot have changed anything.
    #[error("database is unreachable: {0}")]
    Unreachable(sqlx::Error),
    #[error("database error: {0}")]
    Backend(sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("cannot create the database file {}: {error}", path.display())]
    File {
        path: std::path::PathBuf,
        error: std::io::Error,
    },
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(err: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(err)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(err),
            sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => {
                Self::Unavailable(err)
            }
            _ => Self::Backend(err),
        }
    }
}

impl StoreError {
    /// The error of getting a connection or starting a transaction: as [`From`] classifies it,
    /// with unavailability marked as [`StoreError::Unreachable`].
    pub(super) fn before_sending(err: sqlx::Error) -> Self {
        match Self::from(err) {
            Self::Unavailable(e) => Self::Unreachable(e),
            other => other,
        }
    }
}

/// Postgres codes meaning "the server is going away or not accepting us now".
fn is_unavailable_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some("57P01" | "57P02" | "57P03" | "53300" | "08000" | "08003" | "08006" | "3D000")
    )
}

/// Maps a unique-constraint violation to `Conflict(what)`, anything else through `From`.
fn conflict_or(err: sqlx::Error, what: &'static str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => err.into(),
    }
}

/// Pool settings, independent of the config file layout.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout: Duration,
    /// Postgres's `idle_in_transaction_session_timeout` for every connection; zero leaves the
    /// server's setting.
    pub idle_in_transaction_timeout: Duration,
}

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Set on a serving instance on Postgres ([`Store::cache_clients`]).
    clients: Option<Arc<client_cache::ClientCache>>,
    /// Set on a serving instance on Postgres ([`Store::batch_access_checks`]).
    access_checks: Option<access_checks::AccessChecker>,
    /// Set with `access_checks`.
    rotations: Option<rotation_batch::Rotations>,
    /// Woken by a key change another process announced (Postgres NOTIFY).
    key_changes: Arc<tokio::sync::Notify>,
}

impl Store {
    /// Connects (creating the SQLite file if needed) and checks the database answers.
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::from_url(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                if url.contains('?') {
                    format!("{url}&mode=rwc")
                } else {
                    format!("{url}?mode=rwc")
                }
            }
            _ => url.to_owned(),
        };
        if backend == Backend::Sqlite {
            sqlite_file::create_private(&url)?;
        }
        let idle_in_transaction = options.idle_in_transaction_timeout;
        let connect_options = AnyConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("database.url is not valid: {e}")))?;
        let pool = AnyPoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            // sqlx pings every connection it hands out; that is a full round trip per query
            // on the hot path. A dead connection fails its first statement instead, which the
            // request answers with 503 while sqlx drops the connection.
            .test_before_acquire(false)
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    // Tessera never waits inside a transaction for anything but the database,
                    // so a session idle in one is an instance or a network that is gone; its
                    // row locks would otherwise hold up every request for those rows until
                    // TCP gives up on it.
                    if backend == Backend::Postgres && !idle_in_transaction.is_zero() {
                        sqlx::query(
                            "SELECT set_config('idle_in_transaction_session_timeout', $1, false)",
                        )
                        .bind(format!("{}ms", idle_in_transaction.as_millis().max(1)))
                        .execute(&mut *conn)
                        .await?;
                    }
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; the busy timeout makes
                        // writers queue instead of failing; foreign keys are off by default.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                             PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect_options)
            .await
            .map_err(|e| match e {
                sqlx::Error::Configuration(_) => StoreError::Config(format!("database.url: {e}")),
                other => StoreError::Unavailable(other),
            })?;
        Ok(Self {
            pool,
            backend,
            clients: None,
            access_checks: None,
            rotations: None,
            key_changes: Arc::default(),
        })
    }

    /// On Postgres, makes concurrent introspection checks ([`Store::access_token_usable`]) and
    /// concurrent refresh rotations share statements ([`batch`]); the returned task (to be
    /// spawned) runs them. SQLite has no round trips to save and one writer at a time.
    pub fn batch_statements(&mut self) -> Option<impl Future<Output = ()> + Send + 'static> {
        if self.backend != Backend::Postgres {
            return None;
        }
        let (checker, checks) = access_checks::start(self.clone());
        let (rotations, rotating) = rotation_batch::start(self.clone());
        self.access_checks = Some(checker);
        self.rotations = Some(rotations);
        Some(async move {
            tokio::join!(checks, rotating);
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the embedded migrations for this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self.backend {
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&self.pool).await?,
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&self.pool).await?,
        }
        Ok(())
    }

    /// `SELECT 1` through the pool (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Connections open / idle, for metrics.
    pub fn pool_stats(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that will write. SQLite takes the write lock up front
    /// (`BEGIN IMMEDIATE`) so that two writers queue on the busy timeout instead of one
    /// failing when it upgrades its read lock.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        Ok(match self.backend {
            Backend::Sqlite => self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(StoreError::before_sending)?,
            Backend::Postgres => self
                .pool
                .begin()
                .await
                .map_err(StoreError::before_sending)?,
        })
    }
}

/// Space-separated list columns (grant types, scopes, audiences).
fn join_list(items: &[String]) -> String {
    items.join(" ")
}

fn split_list(column: &str) -> Vec<String> {
    column.split_whitespace().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_from_url() {
        assert_eq!(
            Backend::from_url("postgres://x/y").ok(),
            Some(Backend::Postgres)
        );
        assert_eq!(
            Backend::from_url("sqlite://t.db").ok(),
            Some(Backend::Sqlite)
        );
        assert!(Backend::from_url("mysql://x").is_err());
    }

    #[test]
    fn migration_trees_match() {
        let names = |m: &Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&POSTGRES_MIGRATIONS), names(&SQLITE_MIGRATIONS));
        assert!(POSTGRES_MIGRATIONS.iter().next().is_some());
    }
}
