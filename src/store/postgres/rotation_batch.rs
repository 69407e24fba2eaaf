//! Refresh rotation on Postgres, with concurrent rotations sharing one statement and one commit
//! ([`super::batch`]). Each rotation in the batch is the same compare-and-set as the statement
//! of its own it replaces (`ROTATE_IN_ONE_STATEMENT` in [`super::rotation`]): the presented
//! token is marked rotated only if nobody marked it first, its family is live, belongs to the
//! presenting client and its user is enabled; then the successor and the audit row are
//! inserted and the family and its owner returned. A rotation whose claim matches nothing gets
//! no row and changes nothing; its caller then reads how the token stands, after the batch has
//! committed, for `oauth::refresh_rules` to judge. The same token presented twice in one batch
//! is claimed once: `UPDATE ... FROM` changes a row at most once, so the other request finds it
//! rotated, as it would have arriving a moment later. Rows are claimed in the order of their
//! hashes, so that two batches running at once lock shared tokens in the same order (and a
//! deadlock that happens anyway is retried by the batcher, the statement having rolled back).

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use sqlx::postgres::PgPool;
use sqlx::{FromRow, PgConnection};

use super::batch::{Batcher, by_number, numbered_json};
use crate::store::StoreError;
use crate::store::rotation::{FamilyUserRow, claimable, family_owner_columns};

/// What one rotation needs, as the statement reads it from its JSON parameter.
#[derive(Debug, Serialize)]
pub(super) struct RotationItem {
    pub now: i64,
    /// SHA-256 of the presented token, hex.
    pub hash: String,
    pub client_id: String,
    pub next_hash: String,
    pub next_idle: i64,
    /// When the presented token, once rotated, is collected.
    pub forget: i64,
    pub actor: String,
    pub action: &'static str,
    pub outcome: &'static str,
    pub details: String,
}

pub(super) type Rotations = Batcher<RotationItem, Option<FamilyUserRow>>;

/// One statement at a time: every statement costs the database more than the rotations in
/// it, so fewer, larger batches rotate more per second (the refresh scenario in
/// BENCHMARKS.md compares one, two and four in flight).
pub(super) fn start(pool: PgPool) -> (Rotations, impl Future<Output = ()> + Send + 'static) {
    Batcher::start(pool, "refresh_rotation", 1, weigh, rotate_batch)
}

/// The JSON of one rotation: its strings and about 160 bytes of names and numbers.
fn weigh(item: &RotationItem) -> usize {
    160 + item.hash.len()
        + item.client_id.len()
        + item.next_hash.len()
        + item.actor.len()
        + item.action.len()
        + item.outcome.len()
        + item.details.len() * 2
}

#[derive(FromRow)]
struct Rotated {
    i: i64,
    #[sqlx(flatten)]
    row: FamilyUserRow,
}

const ROTATE_BATCH: &str = concat!(
    "WITH q AS MATERIALIZED ( \
         SELECT i, now, decode(hash, 'hex') AS hash, client_id, \
                decode(next_hash, 'hex') AS next_hash, next_idle, forget, actor, action, \
                outcome, details \
         FROM jsonb_to_recordset($1::jsonb) AS q(i BIGINT, now BIGINT, hash TEXT, \
             client_id TEXT, next_hash TEXT, next_idle BIGINT, forget BIGINT, actor TEXT, \
             action TEXT, outcome TEXT, details TEXT) \
         ORDER BY hash \
     ), claimed AS ( \
         UPDATE refresh_tokens AS t SET rotated_at = q.now, idle_expires_at = q.forget FROM q \
         WHERE t.token_hash = ANY (ARRAY(SELECT hash FROM q)) AND t.token_hash = q.hash AND ",
    claimable!("t", "q.now", "q.client_id"),
    " RETURNING q.i, t.family_id \
     ), fam AS ( \
         SELECT c.i, f.* FROM claimed c CROSS JOIN LATERAL ( \
             SELECT ",
    family_owner_columns!(),
    ", u.username_normalized \
             FROM refresh_families f JOIN users u ON u.id = f.user_id \
             WHERE f.id = c.family_id LIMIT 1) f \
     ), successor AS ( \
         INSERT INTO refresh_tokens (token_hash, family_id, issued_at, idle_expires_at) \
         SELECT q.next_hash, fam.id, q.now, LEAST(q.next_idle, fam.expires_at) \
         FROM fam JOIN q ON q.i = fam.i \
     ), logged AS ( \
         INSERT INTO audit_log (at, actor, action, target, outcome, username, client_id, details) \
         SELECT q.now, q.actor, q.action, fam.id, q.outcome, fam.username_normalized, \
                q.client_id, q.details \
         FROM fam JOIN q ON q.i = fam.i \
     ) \
     SELECT fam.i, id, user_id, client_id, scope, created_at, expires_at, username, \
            password_hash, disabled, user_created_at, user_updated_at, password_changed_at, email, email_verified, \
            display_name, \
            (SELECT string_agg(r.role_name, ' ' ORDER BY r.role_name) FROM user_roles r \
             WHERE r.user_id = fam.user_id) AS roles \
     FROM fam"
);

/// One statement, one commit, for the whole batch; `None` for a rotation that claimed nothing.
fn rotate_batch<'c>(
    conn: &'c mut PgConnection,
    items: &'c [RotationItem],
) -> BoxFuture<'c, Result<Vec<Option<FamilyUserRow>>, StoreError>> {
    async move {
        let rotated: Vec<Rotated> = sqlx::query_as(ROTATE_BATCH)
            .bind(numbered_json(items)?)
            .fetch_all(conn)
            .await?;
        Ok(by_number(
            items.len(),
            || None,
            rotated.into_iter().map(|r| (r.i, Some(r.row))),
        ))
    }
    .boxed()
}
