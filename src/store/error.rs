//! The store's one error type, and how sqlx's errors map onto it: what the caller can act on
//! (not found, conflict, unavailable before or after sending) rather than the driver's detail.

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
    /// None of the hosts of a multi-host URL takes writes (a failover under way); nothing was
    /// sent.
    #[error("no database host takes writes: {0}")]
    NoPrimary(String),
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
    /// The database could not be reached or did not answer: worth trying again shortly.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Unreachable(_) | Self::NoPrimary(_)
        )
    }

    /// The error of opening a pool: a URL sqlx refuses is configuration, anything else the
    /// database being unavailable.
    pub(super) fn connecting(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Configuration(_) => Self::Config(format!("database.url: {err}")),
            other => Self::Unavailable(other),
        }
    }

    /// The error of getting a connection or starting a transaction: as [`From`] classifies it,
    /// with unavailability marked as [`StoreError::Unreachable`].
    pub(crate) fn before_sending(err: sqlx::Error) -> Self {
        match Self::from(err) {
            Self::Unavailable(e) => Self::Unreachable(e),
            other => other,
        }
    }
}

/// Postgres codes meaning "the server is going away, not accepting us now, or no longer the
/// primary".
fn is_unavailable_code(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "57P01" | "57P02" | "57P03" | "53300" | "08000" | "08003" | "08006" | "3D000"
                // read_only_sql_transaction: the host was demoted under a live connection.
                | "25006"
        )
    )
}

/// Maps a unique-constraint violation to `Conflict(what)`, anything else through `From`.
pub(super) fn conflict_or(err: sqlx::Error, what: &'static str) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => err.into(),
    }
}
