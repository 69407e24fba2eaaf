//! `kill -9` under a refresh load, then a restart on the same database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::http::{http_client, refresh};
use crate::common::server::CLIENT;
use crate::common::{Backend, TestDb};
use crate::{SERIAL, login, start};

/// How one client chain ended.
#[derive(Debug)]
enum End {
    /// The load was stopped with no request outstanding.
    Stopped,
    /// The connection failed: the process died while (or before) this request was served.
    Transport(String),
    /// An HTTP answer other than a new token.
    Refused(u16, String),
}

/// One client following its own refresh token: every token it received, in order.
#[derive(Debug)]
struct ChainLog {
    tokens: Vec<String>,
    end: End,
    /// When the last request was sent.
    last_sent: Instant,
}

const CHAINS: usize = 20;

/// `kill -9` during sustained refresh rotation by 20 client chains, then a restart on the same
/// database. Every token a client received is in the database (it was committed before the
/// response was sent); each chain's latest token works unless the request that was in flight
/// at the kill had already committed its rotation; no token rotated before the crash works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_refresh_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let http = http_client();
    // No background clean-up: rotated tokens stay in the table for the checks below.
    let mut server = start(&db, &[("TESSERA__MAINTENANCE__GC_INTERVAL", "0s")]);
    server.wait_ready(&http).await;
    let secret = server.seed();
    let base = server.base();

    let mut firsts = Vec::new();
    for _ in 0..CHAINS {
        firsts.push(login(&http, &base, &secret).await.field("refresh_token"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rotations = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for first in firsts {
        let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
        let (stop, rotations) = (stop.clone(), rotations.clone());
        tasks.push(tokio::spawn(async move {
            let mut tokens = vec![first];
            let mut last_sent = Instant::now();
            let deadline = Instant::now() + Duration::from_secs(30);
            let end = loop {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break End::Stopped;
                }
                let current = tokens.last().expect("token").clone();
                last_sent = Instant::now();
                match refresh(&http, &base, (CLIENT, &secret), &current).await {
                    Ok(a) if a.status == 200 => {
                        tokens.push(a.field("refresh_token"));
                        rotations.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(a) => break End::Refused(a.status, a.body.to_string()),
                    Err(e) => break End::Transport(e.to_string()),
                }
            };
            ChainLog {
                tokens,
                end,
                last_sent,
            }
        }));
    }

    // Load for at least 2 s and until 3000 rotations, at most 10 s (a bound, so that a slow
    // machine still gets here); then kill -9.
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let elapsed = started.elapsed();
        let done = rotations.load(Ordering::SeqCst);
        if (elapsed >= Duration::from_secs(2) && done >= 3000) || elapsed >= Duration::from_secs(10)
        {
            break;
        }
    }
    server.kill9();
    // The process is reaped: nothing sent after this can have been served.
    let dead_at = Instant::now();
    let load_time = started.elapsed();
    // Stopped only after the kill, so that requests are in flight when the process dies.
    stop.store(true, Ordering::SeqCst);
    let mut chains = Vec::new();
    for task in tasks {
        chains.push(task.await.expect("join"));
    }
    let rotated_under_load = rotations.load(Ordering::SeqCst);
    for chain in &chains {
        if let End::Refused(status, body) = &chain.end {
            panic!("a refresh was refused under load before the crash: {status} {body}");
        }
    }
    let cut_off: Vec<&str> = chains
        .iter()
        .filter_map(|c| match &c.end {
            End::Transport(e) => Some(e.as_str()),
            _ => None,
        })
        .collect();
    eprintln!(
        "crash: {rotated_under_load} rotations in {load_time:.1?} by {CHAINS} chains \
         ({:.0}/s); {} chains cut off by the kill (e.g. {:?})",
        rotated_under_load as f64 / load_time.as_secs_f64(),
        cut_off.len(),
        cut_off.first()
    );
    assert!(
        rotated_under_load >= 500,
        "sustained load: {rotated_under_load}"
    );

    server.restart();
    server.wait_ready(&http).await;

    // Straight from the database: every token any client received was committed, and every
    // token superseded by a later response was marked rotated.
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let hashes = |tokens: &mut dyn Iterator<Item = &String>| -> Vec<Vec<u8>> {
        tokens.map(|t| tessera::crypto::tokens::hash(t)).collect()
    };
    let received = hashes(&mut chains.iter().flat_map(|c| c.tokens.iter()));
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE token_hash = ANY($1)")
            .bind(&received)
            .fetch_one(&pool)
            .await
            .expect("count");
    let superseded = hashes(
        &mut chains
            .iter()
            .flat_map(|c| c.tokens[..c.tokens.len() - 1].iter()),
    );
    let marked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = ANY($1) AND rotated_at IS NOT NULL",
    )
    .bind(&superseded)
    .fetch_one(&pool)
    .await
    .expect("count");

    // At most one live token per family, and one `token.refresh` audit row per rotation
    // (written in the rotation's transaction, so the crash cannot split them).
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT family_id FROM refresh_tokens WHERE rotated_at IS NULL \
         GROUP BY family_id HAVING count(*) > 1) AS d",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(doubled, 0, "a family has two live tokens");
    let rotated_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE rotated_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("count");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'token.refresh'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(
        rotated_rows, audited,
        "every committed rotation has its audit row"
    );

    // Over HTTP, on the restarted process: each chain's latest token.
    let mut lost = Vec::new();
    let mut survived = 0;
    let mut in_flight_committed = 0;
    let mut successors = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        let latest = chain.tokens.last().expect("token");
        let rotated_at: Option<i64> =
            sqlx::query_scalar("SELECT rotated_at FROM refresh_tokens WHERE token_hash = $1")
                .bind(tessera::crypto::tokens::hash(latest))
                .fetch_one(&pool)
                .await
                .expect("latest token row");
        if rotated_at.is_some() {
            // Only the request in flight at the kill can have rotated it: the rotation
            // committed, the response never arrived. That is not a response the client
            // received, so nothing it was given is lost; it is the lost-response case of
            // rotation. Its successor must be the family's one live token, never delivered.
            let live: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT n.token_hash FROM refresh_tokens o JOIN refresh_tokens n \
                 ON n.family_id = o.family_id WHERE o.token_hash = $1 AND n.rotated_at IS NULL",
            )
            .bind(tessera::crypto::tokens::hash(latest))
            .fetch_all(&pool)
            .await
            .expect("live successor");
            let in_flight = matches!(chain.end, End::Transport(_)) && chain.last_sent < dead_at;
            if in_flight && live.len() == 1 && !received.contains(&live[0]) {
                in_flight_committed += 1;
            } else {
                lost.push(format!(
                    "chain {i}: latest token rotated, but no request of it was in flight \
                     ({:?}) or its successor is not the one undelivered live token ({})",
                    chain.end,
                    live.len()
                ));
            }
            continue;
        }
        let r = refresh(&http, &base, (CLIENT, &secret), latest)
            .await
            .expect("refresh after restart");
        if r.status == 200 {
            survived += 1;
            successors.push((i, r.field("refresh_token")));
        } else {
            lost.push(format!("chain {i}: {} {}", r.status, r.body));
        }
    }

    // A sample of tokens rotated before the crash, up to 10 per chain, spread over the chain:
    // each must be refused. The first per chain is a reuse and revokes the family.
    let mut replayed = 0;
    let mut replay_worked = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        let old = &chain.tokens[..chain.tokens.len() - 1];
        let step = (old.len() / 10).max(1);
        for token in old.iter().step_by(step).take(10) {
            let r = refresh(&http, &base, (CLIENT, &secret), token)
                .await
                .expect("replay");
            replayed += 1;
            if !r.is_invalid_grant() {
                replay_worked.push(format!("chain {i}: {} {}", r.status, r.body));
            }
        }
    }
    // The reuse revoked each family: the tokens just issued after the restart are dead too.
    for (i, token) in &successors {
        let r = refresh(&http, &base, (CLIENT, &secret), token)
            .await
            .expect("refresh");
        assert!(
            r.is_invalid_grant(),
            "chain {i}: a replayed rotated token revokes its family: {}",
            r.body
        );
    }
    eprintln!(
        "after restart: {} received tokens checked in the database ({stored} stored), \
         {} superseded ({marked} marked rotated), {rotated_rows} rotations committed and \
         audited; latest tokens: {survived} work, \
         {in_flight_committed} rotated by the request in flight at the kill; \
         {replayed} rotated tokens replayed, {} accepted; lost = {}",
        received.len(),
        superseded.len(),
        replay_worked.len(),
        lost.len()
    );
    assert_eq!(
        stored as usize,
        received.len(),
        "every token a client received was committed"
    );
    assert_eq!(
        marked as usize,
        superseded.len(),
        "every superseded token is marked rotated"
    );
    assert!(lost.is_empty(), "tokens lost in the crash: {lost:?}");
    assert_eq!(
        rotated_rows as usize,
        superseded.len() + in_flight_committed,
        "committed rotations are the answered ones plus those in flight at the kill"
    );
    assert!(
        replay_worked.is_empty(),
        "rotated tokens worked again: {replay_worked:?}"
    );
    assert_eq!(survived + in_flight_committed, CHAINS);
}
