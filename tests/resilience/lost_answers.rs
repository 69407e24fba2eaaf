//! Answers lost between Postgres and Tessera in the middle of a refresh rotation: lost after
//! the commit, a commit after the cut, a connection gone silent. The proxy's traps cut each
//! one at the moment the test names.

use std::time::{Duration, Instant};

use crate::common::http::{Answer, http_client, refresh, refresh_asking};
use crate::common::server::{CLIENT, Server};
use crate::common::{Backend, TestDb};
use crate::proxy::{Proxy, Trap, Traps};
use crate::{SERIAL, login, start_on};

/// A server whose Postgres connections go through a [`Proxy`] in clear, so that the proxy's
/// traps can see what the messages hold; alice has logged in once (`first` is her refresh
/// token).
struct Trapped {
    // Dropped in this order: the server before its database.
    server: Server,
    proxy: Proxy,
    db: TestDb,
    http: reqwest::Client,
    secret: String,
    base: String,
    first: String,
}

/// A refresh asking for the `read` scope again: a narrower scope takes the multi-statement
/// rotation, whose reply after the claim names the user.
async fn refresh_narrowed(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    token: &str,
) -> Result<Answer, reqwest::Error> {
    refresh_asking(http, base, (CLIENT, secret), token, &[("scope", "read")]).await
}

async fn trapped(extra: &[(&str, &str)]) -> Trapped {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::before(&db.url).await;
    let proxied_url = format!("{}?sslmode=disable", proxy.url_for(&db.url));
    let http = http_client();
    let mut server = start_on(&db.path(), &proxied_url, extra);
    server.wait_ready(&http).await;
    let secret = server.seed();
    let base = server.base();
    let first = login(&http, &base, &secret).await.field("refresh_token");
    Trapped {
        server,
        proxy,
        db,
        http,
        secret,
        base,
        first,
    }
}

/// A refresh rotation commits, but its answer never reaches Tessera: the proxy cuts the
/// connection and drops the first reply that names the user, which is the rotation's. Tessera
/// finds the successor that only this request could have inserted and answers 200 with it,
/// instead of a 503 whose retry would be refused as reuse. A rotation cut before its commit
/// (a narrower scope takes the multi-statement path, whose first reply after the claim names
/// the user) is done again: 200, one audited rotation, and the token it answers works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_answer_is_lost_after_commit_is_still_delivered() {
    let _serial = SERIAL.lock().await;
    let Trapped {
        db: _db,
        proxy,
        server,
        http,
        secret,
        base,
        first,
    } = trapped(&[]).await;

    proxy.traps.reply.arm(b"alice");
    let a = refresh(&http, &base, (CLIENT, &secret), &first)
        .await
        .expect("refresh");
    assert_eq!(
        proxy.traps.reply.sprung(),
        1,
        "the rotation's reply was not cut"
    );
    assert_eq!(
        a.status,
        200,
        "a committed rotation whose answer was lost: {} {}\n{}",
        a.status,
        a.body,
        server.log_tail()
    );
    assert!(
        server.log_tail().contains(r#""how":"found""#),
        "{}",
        server.log_tail()
    );
    let second = a.field("refresh_token");
    assert_eq!(server.audit("token.refresh").len(), 1);

    proxy.traps.reply.arm(b"alice");
    let narrowed = refresh_narrowed(&http, &base, &secret, &second)
        .await
        .expect("refresh");
    assert_eq!(
        proxy.traps.reply.sprung(),
        2,
        "the narrowing rotation's reply was not cut"
    );
    assert_eq!(
        narrowed.status,
        200,
        "a rotation cut before its commit is done again: {} {}\n{}",
        narrowed.status,
        narrowed.body,
        server.log_tail()
    );
    assert!(
        server.log_tail().contains(r#""how":"redone""#),
        "{}",
        server.log_tail()
    );
    assert_eq!(
        server.audit("token.refresh").len(),
        2,
        "one audited rotation per committed one"
    );
    let third = refresh(
        &http,
        &base,
        (CLIENT, &secret),
        &narrowed.field("refresh_token"),
    )
    .await
    .expect("refresh");
    assert_eq!(
        third.status, 200,
        "the redone rotation's token: {}",
        third.body
    );
    // Last, as presenting a rotated token revokes its family.
    let reused = refresh(&http, &base, (CLIENT, &secret), &first)
        .await
        .expect("refresh");
    assert!(
        reused.is_invalid_grant(),
        "the first token was rotated: {}",
        reused.body
    );
    assert_eq!(server.audit("refresh.reuse_detected").len(), 1);
}

/// A rotation is cut before its commit and the database goes away; the client gives up on the
/// request (its own timeout) and, once the database is back, retries the same token. The retry
/// rotates it; the request given up on, still settling, must then neither rotate the token a
/// second time nor take the retry for reuse: it only looks for its own rotation, finds none, and
/// ends (`not_committed`). The login survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_gives_up_and_retries_while_its_rotation_settles_keeps_its_login() {
    let _serial = SERIAL.lock().await;
    // The reply after the claim is lost, and the database is away from then on.
    let Trapped {
        db: _db,
        proxy,
        server,
        http,
        secret,
        base,
        first,
    } = given_up_on(|t| &t.reply_then_refuse, Duration::from_secs(2)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.set(crate::proxy::Mode::Up);
    // The retry comes a moment later, as a client's back-off has it, after the first request's
    // next look.
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let retried = refresh(&http, &base, (CLIENT, &secret), &first)
        .await
        .expect("retry");
    assert_eq!(retried.status, 200, "the retry: {}", retried.body);
    // The request given up on ends within its next look.
    given_up_ends(&server, Duration::from_secs(10)).await;
    the_login_survives(&server, &http, &base, &secret, &retried).await;
}

/// A trapped server (acquire timeout 1 s) whose first rotation, on the multi-statement path,
/// meets `trap` on the reply after its claim (inside the transaction, before the commit), and
/// whose client gives up on it after `patience`, while it is still settling.
async fn given_up_on(trap: fn(&Traps) -> &Trap, patience: Duration) -> Trapped {
    let trapped = trapped(&[("TESSERA__DATABASE__ACQUIRE_TIMEOUT", "1s")]).await;
    trap(&trapped.proxy.traps).arm(b"alice");
    let impatient = reqwest::Client::builder()
        .timeout(patience)
        .build()
        .expect("client");
    let given_up =
        refresh_narrowed(&impatient, &trapped.base, &trapped.secret, &trapped.first).await;
    assert!(
        given_up.is_err(),
        "the request should still be settling when its client gives up: {given_up:?}"
    );
    assert_eq!(trap(&trapped.proxy.traps).sprung(), 1);
    trapped
}

/// Waits, `within` at most, for the log line of a settling that found its rotation had not
/// committed and left it to the client's retry.
async fn given_up_ends(server: &Server, within: Duration) {
    let deadline = Instant::now() + within;
    while !server.logs().contains("the client's retry will do it") {
        assert!(
            Instant::now() < deadline,
            "the request given up on never ended: {}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The token the retry got works, nothing was revoked, and exactly the retry and this refresh
/// were audited: nothing from the request given up on.
async fn the_login_survives(
    server: &Server,
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    retried: &Answer,
) {
    let next = refresh(
        http,
        base,
        (CLIENT, secret),
        &retried.field("refresh_token"),
    )
    .await
    .expect("refresh");
    assert_eq!(next.status, 200, "the retry's token: {}", next.body);
    assert!(server.audit("refresh.family_revoked").is_empty());
    assert!(server.audit("refresh.reuse_detected").is_empty());
    assert_eq!(server.audit("token.refresh").len(), 2);
}

/// A rotation whose loss is noticed late (its connection silent, then cut 6 s into the
/// request, past the client's patience) is never done again by its settling, even though the
/// database answers at once: the client has given up and will retry the token, and a second
/// rotation would make that retry reuse. The settling only looks, finds nothing, and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_lost_late_is_only_looked_for_not_done_again() {
    let _serial = SERIAL.lock().await;
    // The reply after the claim is held back, then the connection is cut and the transaction
    // rolls back.
    let Trapped {
        db: _db,
        proxy: _proxy,
        server,
        http,
        secret,
        base,
        first,
    } = given_up_on(|t| &t.silence, Duration::from_secs(5)).await;
    // The settling, once the cut is seen at 6 s, ends at its first look.
    given_up_ends(&server, crate::proxy::SILENCE + Duration::from_secs(5)).await;

    let retried = refresh(&http, &base, (CLIENT, &secret), &first)
        .await
        .expect("retry");
    assert_eq!(retried.status, 200, "the retry: {}", retried.body);
    the_login_survives(&server, &http, &base, &secret, &retried).await;
}

/// A rotation statement still running when its connection is cut (here, waiting for a row
/// lock) commits after Tessera has seen the cut. Tessera waits for it before looking for the
/// successor, so the client gets the rotation that committed rather than a 503 whose retry
/// would be taken for reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_commits_after_its_connection_is_cut_is_still_delivered() {
    let _serial = SERIAL.lock().await;
    let Trapped {
        db,
        proxy,
        server,
        http,
        secret,
        base,
        first,
    } = trapped(&[]).await;
    let hash = tessera::crypto::tokens::hash(&first);

    // Straight to Postgres: hold the presented token's row so that the rotation waits.
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE")
        .bind(&hash)
        .execute(&mut *holder)
        .await
        .expect("lock the token");

    // The batched rotation carries the presented token's hash in hex.
    proxy.traps.request.arm(hex::encode(&hash).as_bytes());
    let rotation = tokio::spawn({
        let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
        async move { refresh(&http, &base, (CLIENT, &secret), &first).await }
    });
    // Both the cut-off rotation and Tessera's look for its outcome queue for the row.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .expect("pg_stat_activity");
        if waiting == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected the rotation and the look for its outcome to wait for the row lock; \
             {waiting} waiting, trap sprung {} time(s)\n{}",
            proxy.traps.request.sprung(),
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        proxy.traps.request.sprung(),
        1,
        "the rotation's connection was not cut"
    );
    holder.commit().await.expect("release the token");

    let a = rotation.await.expect("task").expect("refresh");
    assert_eq!(
        a.status,
        200,
        "a rotation that committed after its connection was cut: {} {}\n{}",
        a.status,
        a.body,
        server.log_tail()
    );
    assert!(
        server.log_tail().contains("recovered"),
        "{}",
        server.log_tail()
    );
    let next = refresh(&http, &base, (CLIENT, &secret), &a.field("refresh_token"))
        .await
        .expect("refresh");
    assert_eq!(next.status, 200, "the delivered token works: {}", next.body);
    assert_eq!(server.audit("token.refresh").len(), 2);
}

/// A rotation's connection goes silent in the middle of its transaction (no FIN, no RST), with
/// the presented token's row locked. Postgres ends the session after
/// `database.idle_in_transaction_timeout`, so the client's retry with the same token is
/// answered instead of waiting behind the lock until TCP gives up; the request on the silent
/// connection is answered 503 at `server.request_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_network_goes_silent_releases_its_locks() {
    let _serial = SERIAL.lock().await;
    let Trapped {
        db: _db,
        proxy,
        server,
        http,
        secret,
        base,
        first: token,
    } = trapped(&[
        ("TESSERA__DATABASE__IDLE_IN_TRANSACTION_TIMEOUT", "1s"),
        ("TESSERA__SERVER__REQUEST_TIMEOUT", "3s"),
    ])
    .await;

    // The multi-statement path (a narrower scope): the token is claimed, then the reply that
    // names the user never comes, and the transaction stays open on the database's side.
    proxy.traps.freeze.arm(b"alice");
    let frozen = tokio::spawn({
        let (http, base, secret, token) =
            (http.clone(), base.clone(), secret.clone(), token.clone());
        async move { refresh_narrowed(&http, &base, &secret, &token).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.traps.freeze.sprung() == 0 {
        assert!(
            Instant::now() < deadline,
            "the rotation's reply was not held back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let asked = Instant::now();
    let retry = refresh(&http, &base, (CLIENT, &secret), &token)
        .await
        .expect("the retry is answered within the client's timeout");
    assert_eq!(
        retry.status,
        200,
        "the silent transaction never committed, so the token is still good: {}\n{}",
        retry.body,
        server.log_tail()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        asked.elapsed()
    );
    assert_eq!(server.audit("token.refresh").len(), 1);

    // The request on the silent connection itself is answered at `server.request_timeout`.
    let cut_short = tokio::time::timeout(Duration::from_secs(10), frozen)
        .await
        .expect("the frozen request is answered within the request timeout")
        .expect("task")
        .expect("an answer");
    assert!(
        cut_short.is_unavailable(),
        "{} {}",
        cut_short.status,
        cut_short.body
    );
    assert!(
        server.log_tail().contains("request timed out"),
        "{}",
        server.log_tail()
    );
}
