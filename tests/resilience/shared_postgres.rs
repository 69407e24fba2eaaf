//! Two instances, one Postgres: tokens, revocations, a refresh race and the login throttle
//! shared between them, and a simultaneous first start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::http::{get, http_client, introspect, kid_of, password_grant, refresh, revoke};
use crate::common::server::{CLIENT, PASSWORD, cli_ok};
use crate::common::{Backend, TestDb};
use crate::{SERIAL, cluster_env, login, start};

/// Two processes on two ports, one database: tokens travel between them, a revocation at one
/// is seen at the other at once, a refresh race spread over both has one winner and revokes
/// the family, and login failures at both count toward one throttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_postgres() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let settings = [("TESSERA__SECURITY__MAX_FAILURES", "3")];
    let http = http_client();
    let mut a = start(&db, &settings);
    a.wait_ready(&http).await;
    let secret = a.seed();
    a.add_user("carol");
    let mut b = start(&db, &settings);
    b.wait_ready(&http).await;
    let (a_url, b_url) = (a.base(), b.base());

    // Both publish the one key and sign with it.
    let jwks_a = get(&http, &a.url("/.well-known/jwks.json")).await.body;
    let jwks_b = get(&http, &b.url("/.well-known/jwks.json")).await.body;
    assert_eq!(jwks_a, jwks_b, "both instances publish the same keys");

    // A token issued by A refreshes at B.
    let first = login(&http, &a_url, &secret).await;
    let at_b = refresh(
        &http,
        &b_url,
        (CLIENT, &secret),
        &first.field("refresh_token"),
    )
    .await
    .expect("refresh at B");
    assert_eq!(
        at_b.status, 200,
        "A's refresh token works at B: {}",
        at_b.body
    );
    assert_eq!(
        kid_of(&first.field("access_token")),
        kid_of(&at_b.field("access_token")),
        "A and B sign with the same key"
    );
    let refresh_b = at_b.field("refresh_token");
    let access_b = at_b.field("access_token");
    // Each instance accepts the other's access tokens at introspection.
    assert_eq!(
        introspect(&http, &a_url, (CLIENT, &secret), &access_b).await["active"],
        true
    );
    assert_eq!(
        introspect(
            &http,
            &b_url,
            (CLIENT, &secret),
            &first.field("access_token")
        )
        .await["active"],
        true
    );
    assert_eq!(
        introspect(&http, &b_url, (CLIENT, &secret), &refresh_b).await["active"],
        true
    );

    // Revocation at A is seen by introspection at B at once (no cache in between).
    revoke(&http, &a_url, (CLIENT, &secret), &refresh_b).await;
    assert_eq!(
        introspect(&http, &b_url, (CLIENT, &secret), &refresh_b).await["active"],
        false,
        "refresh token revoked at A is inactive at B"
    );
    revoke(&http, &a_url, (CLIENT, &secret), &access_b).await;
    assert_eq!(
        introspect(&http, &b_url, (CLIENT, &secret), &access_b).await["active"],
        false,
        "access token revoked at A is inactive at B"
    );
    let after = refresh(&http, &b_url, (CLIENT, &secret), &refresh_b)
        .await
        .expect("refresh");
    assert!(after.is_invalid_grant(), "revoked at A, refused at B");

    // 100 concurrent refreshes of one token, alternately at A and B.
    let race = login(&http, &a_url, &secret).await.field("refresh_token");
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let base = if i % 2 == 0 { &a_url } else { &b_url }.clone();
        let (http, secret, race, barrier) =
            (http.clone(), secret.clone(), race.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let answer = refresh(&http, &base, (CLIENT, &secret), &race).await;
            (i % 2, answer)
        }));
    }
    let mut winners = Vec::new();
    let mut refused = [0usize; 2];
    for task in tasks {
        let (instance, answer) = task.await.expect("join");
        let answer = answer.expect("every racer gets an answer");
        if answer.status == 200 {
            winners.push((instance, answer.field("refresh_token")));
        } else {
            assert!(
                answer.is_invalid_grant(),
                "a loser gets invalid_grant, not {} {}",
                answer.status,
                answer.body
            );
            refused[instance] += 1;
        }
    }
    eprintln!(
        "refresh race: {} winner(s) (at {:?}), invalid_grant at A {} / at B {}",
        winners.len(),
        winners
            .iter()
            .map(|(i, _)| ["A", "B"][*i])
            .collect::<Vec<_>>(),
        refused[0],
        refused[1]
    );
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh succeeds");
    assert!(
        refused[0] > 0 && refused[1] > 0,
        "both instances took part in the race"
    );
    // RFC 9700 §4.14.2 with no grace: the reuse revoked the family, so the winner's new token
    // is dead too, at either instance.
    let won = &winners[0].1;
    assert_eq!(
        introspect(&http, &b_url, (CLIENT, &secret), won).await["active"],
        false,
        "the winner's token belongs to a revoked family"
    );
    for base in [&a_url, &b_url] {
        let r = refresh(&http, base, (CLIENT, &secret), won)
            .await
            .expect("refresh");
        assert!(
            r.is_invalid_grant(),
            "winner's token after reuse: {}",
            r.body
        );
    }
    let reuse = a.audit("refresh.reuse_detected");
    assert_eq!(
        reuse.len(),
        1,
        "one reuse recorded, by the revoker: {reuse:?}"
    );
    let revoked_for_reuse = a
        .audit("refresh.family_revoked")
        .into_iter()
        .filter(|r| r["details"]["reason"] == "reuse_detected")
        .count();
    assert_eq!(revoked_for_reuse, 1, "the family was revoked once");

    // Throttling counts failures at both instances: wrong passwords at A, B, A, then the right
    // one is refused at B and at A.
    for (i, base) in [&a_url, &b_url, &a_url].into_iter().enumerate() {
        let r = password_grant(
            &http,
            base,
            (CLIENT, &secret),
            "carol",
            &format!("Wrong-Guess-{i}"),
        )
        .await
        .expect("login");
        assert!(r.is_invalid_grant(), "wrong password: {}", r.body);
    }
    // The lock taken by the third failure lasts at least a second (2 s, in whole seconds).
    for base in [&b_url, &a_url] {
        let r = password_grant(&http, base, (CLIENT, &secret), "carol", PASSWORD)
            .await
            .expect("login");
        assert!(
            r.is_invalid_grant(),
            "the right password is refused while throttled, at {base}: {} {}",
            r.status,
            r.body
        );
    }
    // Failed logins are audited by a batched writer off the request path (flushed every
    // 20 ms by default), so wait a little for all five rows.
    let count = |rows: &[Value], reason: &str| {
        rows.iter()
            .filter(|r| r["user"] == "carol" && r["details"]["reason"] == reason)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let failures = loop {
        let rows = a.audit("login.failure");
        if (count(&rows, "wrong_password") >= 3 && count(&rows, "throttled") >= 2)
            || Instant::now() > deadline
        {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reasons = |reason: &str| count(&failures, reason);
    eprintln!(
        "throttling: carol's failures wrong_password {} throttled {}",
        reasons("wrong_password"),
        reasons("throttled")
    );
    assert_eq!(reasons("wrong_password"), 3);
    assert_eq!(reasons("throttled"), 2, "both refusals were the throttle");
}

/// Two instances starting at the same moment on an empty database create exactly one signing
/// key. Round 0 races the migrations too; round 1 starts on a migrated schema so that the two
/// key insertions race as closely as they can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_first_start_creates_one_signing_key() {
    let _serial = SERIAL.lock().await;
    let http = http_client();
    for round in 0..2 {
        let db = TestDb::new(Backend::Postgres).await;
        let mut extra = Vec::new();
        if round > 0 {
            cli_ok(&db.path(), &cluster_env(&db.url), &["migrate"], None);
            extra.push(("TESSERA__DATABASE__MIGRATE_ON_START", "false"));
        }
        let mut a = start(&db, &extra);
        let mut b = start(&db, &extra);
        a.wait_ready(&http).await;
        b.wait_ready(&http).await;
        let keys = a.cli_json(&["key", "list", "--json"]);
        let keys = keys.as_array().expect("keys");
        assert_eq!(keys.len(), 1, "round {round}: one signing key: {keys:?}");
        assert_eq!(keys[0]["state"], "active");
        let kid = keys[0]["kid"].as_str().expect("kid");
        for server in [&a, &b] {
            let jwks = get(&http, &server.url("/.well-known/jwks.json")).await.body;
            let kids: Vec<&str> = jwks["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .filter_map(|k| k["kid"].as_str())
                .collect();
            assert_eq!(kids, [kid], "round {round}: the JWKS holds the one key");
        }
        eprintln!("simultaneous start, round {round}: one key {kid}");
    }
}
