//! The SQLite store: the shared statements on one file (or in memory), with what SQLite needs
//! of its own: a private file, WAL, and write transactions that take the lock up front. It has
//! no round trips to save, so none of the Postgres fast paths.

mod file;

use std::str::FromStr;

use sqlx::Executor;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use super::PoolOptions;
use super::prelude::*;

type Db = sqlx::Sqlite;
type Conn = sqlx::SqliteConnection;

/// A login session's user. Writes are serialized by `BEGIN IMMEDIATE`: nothing to hold.
const LOCK_SESSION_USER: &str =
    "SELECT 1 FROM users WHERE id = (SELECT user_id FROM browser_sessions WHERE id = $1)";

/// A login session's row (writes are serialized by `BEGIN IMMEDIATE`: nothing to hold).
const LOCK_SESSION: &str = "SELECT id FROM browser_sessions WHERE id = $1";

/// A login session still live and its user unchanged since the sign-in (writes are serialized
/// by `BEGIN IMMEDIATE`, so nothing changes them before the transaction ends).
const CHECK_SESSION_LIVE: &str = "SELECT s.id FROM browser_sessions s \
     JOIN users u ON u.id = s.user_id WHERE s.id = $1 AND s.revoked_at IS NULL \
     AND s.expires_at > $2 AND u.disabled = 0 AND u.password_changed_at <= s.auth_time";

/// The user row a login starts a family for; `BEGIN IMMEDIATE` already keeps a password
/// change or disable out until the login commits.
const CHECK_USER_UNCHANGED: &str =
    "SELECT id FROM users WHERE id = $1 AND disabled = 0 AND password_hash = $2";

pub(super) static MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Debug)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// How long a rotation whose answer was lost keeps trying to settle.
    pub(super) settle_timeout: std::time::Duration,
}

impl SqliteStore {
    /// Opens the database, creating its file (private to its owner) unless the URL says
    /// otherwise.
    pub(super) async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        let url = if !url.contains("mode=") && !url.contains(":memory:") {
            if url.contains('?') {
                format!("{url}&mode=rwc")
            } else {
                format!("{url}?mode=rwc")
            }
        } else {
            url.to_owned()
        };
        file::create_private(&url)?;
        let connect_options = SqliteConnectOptions::from_str(&url)
            .map_err(|e| StoreError::Config(format!("database.url is not valid: {e}")))?;
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections)
            .min_connections(options.min_connections)
            .acquire_timeout(options.acquire_timeout)
            .test_before_acquire(false)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL lets readers run beside the writer; the busy timeout makes writers
                    // queue instead of failing; foreign keys are off by default.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                         PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
                    )
                    .await?;
                    Ok(())
                })
            })
            .connect_with(connect_options)
            .await
            .map_err(StoreError::connecting)?;
        Ok(Self {
            pool,
            settle_timeout: options.settle_timeout,
        })
    }

    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Nobody announces key changes here: every instance polls the key table's marker.
    pub(super) async fn key_change_announced(&self) {
        std::future::pending::<()>().await;
    }

    /// Takes the write lock up front (`BEGIN IMMEDIATE`) so that two writers queue on the busy
    /// timeout instead of one failing when it upgrades its read lock.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::before_sending)
    }

    /// Clients are read from the file each time: there is no cache to tell.
    async fn announce_client_change(&self, _: &mut Conn, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    /// Every instance polls the key table's marker: there is no one to wake.
    async fn announce_key_change(&self, _: &mut Conn, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    pub(super) async fn find_client(
        &self,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, StoreError> {
        self.read_client(client_id).await
    }

    pub(super) async fn access_token_usable(&self, check: AccessCheck) -> Result<bool, StoreError> {
        if holds_nul(&check) {
            return Ok(false);
        }
        self.check_access_alone(&check).await
    }

    /// The audit log is one table here.
    fn audit_rows_table(&self) -> &'static str {
        "audit_log"
    }

    pub(super) async fn prepare_audit_partitions(&self, _: i64, _: i64) -> Result<u64, StoreError> {
        Ok(0)
    }

    pub(super) async fn drop_audit_partitions(&self, _: i64) -> Result<(u64, u64), StoreError> {
        Ok((0, 0))
    }

    /// One transaction, which already excludes every other writer.
    pub(super) async fn create_family(
        &self,
        family: &NewFamily,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError> {
        self.create_family_in_transaction(family, events).await
    }

    /// The multi-statement rotation, in a write transaction of its own.
    async fn claim_rotation(&self, req: &RotationRequest) -> Result<Option<Rotation>, StoreError> {
        let tx = self.begin_write().await?;
        self.claim_in(tx, req, None).await
    }

    /// SQLite's write transaction already excludes the statement being settled.
    async fn begin_settle(
        &self,
        _presented_hash: &[u8],
    ) -> Result<sqlx::Transaction<'static, Db>, StoreError> {
        self.begin_write().await
    }
}

impl SqliteStore {
    super::shared_statements!();
}

/// One multi-row INSERT of numbered placeholders (SQLite has no array parameters).
async fn insert_audit_rows(conn: &mut Conn, events: &[AuditEvent]) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO audit_log ({COLUMNS}) VALUES {}",
        values(1, events.len())
    );
    // Only numbered placeholders are generated; every value is bound.
    SqliteStore::bind_audit(sqlx::query(sqlx::AssertSqlSafe(sql)), events)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
