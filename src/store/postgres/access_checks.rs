//! Whether an access token is still usable (not denylisted, client still registered, user still
//! enabled and without a password change since) is read from the database on every
//! introspection, so that a revocation is seen at once by every instance. On Postgres the
//! checks of concurrent introspections share one query ([`super::batch`]), one query in
//! flight: the introspect scenario in BENCHMARKS.md measures one, two and four against a
//! query per check.

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use sqlx::PgConnection;
use sqlx::postgres::PgPool;

use super::batch::{Batcher, by_number, numbered_json};
use crate::store::{AccessCheck, StoreError};

pub(super) type AccessChecker = Batcher<AccessCheck, bool>;

pub(super) fn start(pool: PgPool) -> (AccessChecker, impl Future<Output = ()> + Send + 'static) {
    Batcher::start(pool, "access_check", 1, weigh, check_batch)
}

/// The JSON of one check: its strings and about 60 bytes of names and numbers.
fn weigh(check: &AccessCheck) -> usize {
    80 + check.jti.len()
        + check.client_id.len()
        + check.user_id.as_ref().map_or(4, String::len)
        + check.family_id.as_ref().map_or(4, String::len)
}

/// One row per check: 1 when usable. The checks travel as one JSON parameter, so the statement
/// text is the same whatever the batch size and stays prepared. Each lookup is a LATERAL
/// subquery with LIMIT 1 so that it stays one index probe per check: as plain `EXISTS` the
/// planner hashes the whole denylist once per statement, which grows with every revocation.
const BATCH_QUERY: &str = "\
SELECT q.i, CASE WHEN d.hit IS NULL AND c.hit IS NOT NULL AND f.hit IS NULL \
                  AND (q.user_id IS NULL OR u.hit IS NOT NULL) THEN 1::BIGINT ELSE 0::BIGINT END \
FROM jsonb_to_recordset($1::jsonb) \
     AS q(i BIGINT, jti TEXT, client_id TEXT, user_id TEXT, family_id TEXT, iat BIGINT) \
LEFT JOIN LATERAL (SELECT 1 AS hit FROM access_denylist WHERE jti = q.jti LIMIT 1) d ON TRUE \
LEFT JOIN LATERAL (SELECT 1 AS hit FROM clients WHERE client_id = q.client_id LIMIT 1) c ON TRUE \
LEFT JOIN LATERAL (SELECT 1 AS hit FROM users WHERE id = q.user_id AND disabled = 0 \
                   AND password_changed_at <= q.iat LIMIT 1) u ON TRUE \
LEFT JOIN LATERAL (SELECT 1 AS hit FROM refresh_families WHERE id = q.family_id \
                   AND revoked_at IS NOT NULL LIMIT 1) f ON TRUE";

/// The checks of a whole batch in one statement. A check the answer leaves out
/// is not usable.
fn check_batch<'c>(
    conn: &'c mut PgConnection,
    checks: &'c [AccessCheck],
) -> BoxFuture<'c, Result<Vec<bool>, StoreError>> {
    async move {
        let answers: Vec<(i64, i64)> = sqlx::query_as(BATCH_QUERY)
            .bind(numbered_json(checks)?)
            .fetch_all(conn)
            .await?;
        Ok(by_number(
            checks.len(),
            || false,
            answers.into_iter().map(|(i, usable)| (i, usable == 1)),
        ))
    }
    .boxed()
}
