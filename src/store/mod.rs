//! All SQL lives here. [`Store`] is one of two backends, chosen by the URL scheme at start:
//! [`PgStore`] on a `PgPool`, with the Postgres fast paths it owns (client cache, statement
//! batching, one-statement rotations, audit partitions), and [`SqliteStore`] on a `SqlitePool`.
//! Statements both run the same way are written once, in the concept files below, and expanded
//! into each backend's store; see ARCHITECTURE.md.

mod audit;
mod audit_writer;
mod browser;
mod clients;
mod error;
mod keys;
mod maintenance;
mod postgres;
mod refresh;
mod roles;
mod rotation;
mod sqlite;
mod throttle;
mod users;

use std::time::Duration;

pub use audit::{AuditEvent, AuditFilter, AuditRow};
pub use audit_writer::{AuditWriter, OnOverload, WriterOptions};
pub use browser::{
    CodeRecord, ConsentRecord, NewCode, NewSession, Redeemed, Redemption, SessionRecord,
    SessionTarget,
};
pub use clients::{ClientRecord, NewClient};
pub use error::StoreError;
pub use keys::{KeyChangeMarker, StoredKey};
pub use maintenance::{AccessCheck, GcCutoffs, GcReport};
pub use postgres::{PgStore, READ_ONLY_HOST_REFUSED};
pub use refresh::{FamilyRecord, FamilySummary, NewFamily, RefreshLookup};
pub use roles::RoleRecord;
pub use rotation::{Narrowing, Rotation, RotationRequest};
pub use sqlite::SqliteStore;
pub use throttle::ThrottleState;
pub use users::{NewUser, UserProfile, UserRecord};

/// What the statements shared by both backends name; each backend module imports it whole,
/// since a shared statement is expanded there (see [`shared`]).
mod prelude {
    pub(super) use super::audit::{AuditEvent, AuditFilter, AuditRow, COLUMNS, MAX_BATCH, values};
    pub(super) use super::browser::{
        CodeRecord, ConsentRecord, END_SESSION_FAMILIES, NewCode, NewSession, Redeemed, Redemption,
        SessionRecord, SessionTarget,
    };
    pub(super) use super::clients::{CLIENT_COLUMNS, ClientRecord, ClientRow, NewClient};
    pub(super) use super::error::{StoreError, conflict_or};
    pub(super) use super::keys::{KeyChangeMarker, StoredKey};
    pub(super) use super::maintenance::{AccessCheck, GcCutoffs, GcReport, holds_nul};
    pub(super) use super::refresh::{FamilySummary, LOOKUP, NewFamily, RefreshLookup};
    pub(super) use super::roles::RoleRecord;
    pub(super) use super::rotation::{
        FamilyUserRow, Rotation, RotationRequest, claimable, claimed_rotation, family_and_owner,
    };
    pub(super) use super::throttle::{LoginRow, ThrottleState, login_from_rows};
    pub(super) use super::users::{
        NewUser, UserProfile, UserRecord, UserRoleRow, fold_users, select_user_roles,
    };
    pub(super) use super::{Page, join_list, like_prefix, split_list};
}

/// Expands every statement shared by both backends into the `impl` block it is called in:
/// the block's type has `pool`, `begin_write` and the `announce_*` hooks, and the module
/// names its database `Db`, its connection `Conn` and its `MIGRATIONS`.
macro_rules! shared_statements {
    () => {
        /// Applies the backend's embedded migrations (`MIGRATIONS`).
        pub(super) async fn migrate(&self) -> Result<(), StoreError> {
            MIGRATIONS.run(&self.pool).await?;
            Ok(())
        }

        pub(super) async fn close(&self) {
            self.pool.close().await;
        }

        $crate::store::audit::audit_statements!();
        $crate::store::browser::browser_statements!();
        $crate::store::clients::client_statements!();
        $crate::store::keys::key_statements!();
        $crate::store::maintenance::maintenance_statements!();
        $crate::store::refresh::refresh_statements!();
        $crate::store::roles::role_statements!();
        $crate::store::rotation::rotation_statements!();
        $crate::store::throttle::throttle_statements!();
        $crate::store::users::user_statements!();
    };
}
use shared_statements;

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

/// Space-separated list columns (grant types, scopes, audiences).
fn join_list(items: &[String]) -> String {
    items.join(" ")
}

fn split_list(column: &str) -> Vec<String> {
    column.split_whitespace().map(str::to_owned).collect()
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
    /// How long a refresh rotation whose answer was lost (a cut connection, a failover) keeps
    /// trying to settle before the request gives up with 503.
    pub settle_timeout: Duration,
}

/// The database, whichever backend holds it. Cheap to clone: both backends share their pool
/// and fast paths between clones.
#[derive(Clone, Debug)]
pub enum Store {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl Store {
    /// Connects to `postgres://` or `sqlite:` (creating the SQLite file if needed) and checks
    /// the database answers.
    pub async fn connect(url: &str, options: &PoolOptions) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres(PgStore::connect(url, options).await?))
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::connect(url, options).await?))
        } else {
            Err(StoreError::Config(
                "database.url must start with postgres:// or sqlite:".into(),
            ))
        }
    }

    /// The backend's name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Whether several servers may share this database. A secret kept in a file beside it
    /// (the key-encryption key) would then differ between them.
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// Starts what keeps a serving instance's fast paths current (the Postgres client cache
    /// and key-change listener); the handles end with the server.
    pub fn follow_changes(&self) -> Vec<tokio::task::JoinHandle<()>> {
        match self {
            Self::Postgres(pg) => pg.follow_changes(),
            Self::Sqlite(_) => Vec::new(),
        }
    }

    /// The client from memory, when the backend keeps clients there; no database access.
    pub fn cached_client(&self, client_id: &str) -> Option<ClientRecord> {
        match self {
            Self::Postgres(pg) => pg.cached_client(client_id),
            Self::Sqlite(_) => None,
        }
    }

    /// Connections open / idle, for metrics.
    pub fn pool_stats(&self) -> (u32, usize) {
        match self {
            Self::Postgres(pg) => (pg.pool.size(), pg.pool.num_idle()),
            Self::Sqlite(lite) => (lite.pool.size(), lite.pool.num_idle()),
        }
    }
}

/// Each method forwards to the backend's store: one `match` per call, no boxing.
macro_rules! forward {
    ($( $(#[$meta:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        impl Store {
            $(
                $(#[$meta])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match self {
                        Self::Postgres(pg) => pg.$name($($arg),*).await,
                        Self::Sqlite(lite) => lite.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

forward! {
    /// Applies the embedded migrations for this backend.
    fn migrate(&self) -> Result<(), StoreError>;
    /// `SELECT 1` through the pool (readiness).
    fn ping(&self) -> Result<(), StoreError>;
    fn close(&self) -> ();

    fn record(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    fn audit_query(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError>;
    fn prepare_audit_partitions(&self, now: i64, days_ahead: i64) -> Result<u64, StoreError>;
    fn drop_audit_partitions(&self, cutoff: i64) -> Result<(u64, u64), StoreError>;

    fn create_client(&self, client: &NewClient, event: &AuditEvent) -> Result<(), StoreError>;
    fn find_client(&self, client_id: &str) -> Result<Option<ClientRecord>, StoreError>;
    fn list_clients(&self, page: &Page) -> Result<Vec<ClientRecord>, StoreError>;
    fn set_client_secret(&self, client_id: &str, secret_hash: &[u8], now: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn update_client(&self, client: &ClientRecord, now: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn delete_client(&self, client_id: &str, event: &AuditEvent) -> Result<(), StoreError>;
    fn max_client_access_ttl(&self) -> Result<Option<i64>, StoreError>;
    fn all_client_scopes(&self) -> Result<Vec<String>, StoreError>;

    fn list_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    fn insert_key(&self, key: &StoredKey, event: &AuditEvent) -> Result<(), StoreError>;
    fn retire_key(&self, kid: &str, at: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn revoke_key(&self, kid: &str, at: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn activate_key_at(&self, kid: &str, at: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn key_change_marker(&self) -> Result<KeyChangeMarker, StoreError>;
    /// Resolves when another process has announced a key change (Postgres NOTIFY, heard by
    /// [`Store::follow_changes`]); never on SQLite, where only the marker tells.
    fn key_change_announced(&self) -> ();
    fn delete_key(&self, kid: &str) -> Result<u64, StoreError>;

    fn gc_batch(&self, cut: GcCutoffs, batch: i64) -> Result<GcReport, StoreError>;
    fn deny_access_token(&self, jti: &str, expires_at: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn access_token_usable(&self, check: AccessCheck) -> Result<bool, StoreError>;

    fn create_family(&self, family: &NewFamily, events: &[AuditEvent]) -> Result<bool, StoreError>;
    fn rotate_refresh_token(&self, req: RotationRequest) -> Result<Rotation, StoreError>;
    fn find_refresh_token(&self, hash: &[u8]) -> Result<Option<RefreshLookup>, StoreError>;
    fn revoke_family(&self, family_id: &str, now: i64, reason: &str, events: &[AuditEvent]) -> Result<bool, StoreError>;
    fn revoke_families(&self, user_id: Option<&str>, client_id: Option<&str>, now: i64, reason: &str, event: &AuditEvent) -> Result<u64, StoreError>;
    fn list_families(&self, user_id: &str, now: i64, page: &Page) -> Result<Vec<FamilySummary>, StoreError>;

    fn start_session(&self, session: &NewSession, events: &[AuditEvent]) -> Result<bool, StoreError>;
    fn find_session(&self, secret_hash: &[u8], now: i64) -> Result<Option<SessionRecord>, StoreError>;
    fn hold_consent(&self, id: &str, request_hash: &[u8], now: i64) -> Result<(), StoreError>;
    fn take_consent(&self, id: &str, request_hash: &[u8], shown_after: i64) -> Result<bool, StoreError>;
    fn find_session_id(&self, secret_hash: &[u8]) -> Result<Option<String>, StoreError>;
    fn touch_session(&self, id: &str, now: i64, idle_expires_at: i64) -> Result<(), StoreError>;
    fn end_sessions(&self, target: SessionTarget<'_>, now: i64, reason: &str, event: &AuditEvent) -> Result<u64, StoreError>;
    fn list_sessions(&self, user_id: &str, now: i64) -> Result<Vec<SessionRecord>, StoreError>;
    fn insert_code(&self, code: &NewCode, events: &[AuditEvent]) -> Result<(), StoreError>;
    fn find_code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, StoreError>;
    fn redeem_code(&self, r: &Redemption<'_>, events: &[AuditEvent]) -> Result<Redeemed, StoreError>;
    fn revoke_code_grants(&self, code_hash: &[u8], now: i64, events: &[AuditEvent]) -> Result<bool, StoreError>;
    fn find_consent(&self, user_id: &str, client_id: &str) -> Result<Option<String>, StoreError>;
    fn grant_consent(&self, user_id: &str, client_id: &str, scope: &str, now: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn list_consents(&self, user_id: &str) -> Result<Vec<ConsentRecord>, StoreError>;
    fn revoke_consent(&self, user_id: &str, client_id: &str, now: i64, event: &AuditEvent) -> Result<(), StoreError>;

    fn create_role(&self, name: &str, description: &str, now: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn list_roles(&self) -> Result<Vec<RoleRecord>, StoreError>;
    fn delete_role(&self, name: &str, force: bool, event: &AuditEvent) -> Result<i64, StoreError>;
    fn count_role_members(&self, name: &str) -> Result<i64, StoreError>;

    fn login_throttle(&self, username_normalized: &str) -> Result<Option<ThrottleState>, StoreError>;
    fn find_login(&self, username_normalized: &str) -> Result<(Option<UserRecord>, Option<ThrottleState>), StoreError>;
    fn record_login_failure(&self, username_normalized: &str, now: i64, lock_until: &(dyn Fn(i64) -> Option<i64> + Sync)) -> Result<i64, StoreError>;
    fn clear_login_failures(&self, username_normalized: &str, seen: i64) -> Result<(), StoreError>;
    fn gc_login_throttle(&self, cutoff: i64, batch: i64) -> Result<u64, StoreError>;

    fn create_user(&self, user: &NewUser, event: &AuditEvent) -> Result<(), StoreError>;
    fn list_users(&self, page: &Page, prefix: Option<&str>) -> Result<Vec<UserRecord>, StoreError>;
    fn find_user(&self, username_normalized: &str) -> Result<Option<UserRecord>, StoreError>;
    fn find_user_by_id(&self, id: &str) -> Result<Option<UserRecord>, StoreError>;
    fn set_password(&self, user_id: &str, hash: &str, now: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn set_user_profile(&self, user_id: &str, profile: &UserProfile, now: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn upgrade_password_hash(&self, user_id: &str, old_hash: &str, new_hash: &str) -> Result<(), StoreError>;
    fn set_user_disabled(&self, user_id: &str, disabled: bool, now: i64, event: &AuditEvent) -> Result<(), StoreError>;
    fn delete_user(&self, user_id: &str, event: &AuditEvent) -> Result<(), StoreError>;
    fn grant_role(&self, user_id: &str, role: &str, event: &AuditEvent) -> Result<(), StoreError>;
    fn revoke_role(&self, user_id: &str, role: &str, event: &AuditEvent) -> Result<(), StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_trees_match() {
        let names = |m: &sqlx::migrate::Migrator| {
            m.iter()
                .map(|m| (m.version, m.description.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&postgres::MIGRATIONS), names(&sqlite::MIGRATIONS));
        assert!(postgres::MIGRATIONS.iter().next().is_some());
    }

    #[test]
    fn like_prefix_escapes_wildcards() {
        assert_eq!(like_prefix("a_b%c\\"), "a\\_b\\%c\\\\%");
    }
}
