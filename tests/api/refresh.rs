//! The refresh token grant (RFC 6749 §6): rotation, reuse detection (RFC 9700 §4.14.2) with
//! its grace window, races, scope narrowing, roles read afresh, account changes, idle and
//! absolute lifetimes, and binding to the client.

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use tessera::store::{AuditFilter, AuditRow};

use crate::both_backends;
use crate::helpers::basic;
use crate::helpers::{
    Backend, Client, TestApp, access_token_of, claims, refresh_token_of, spawn_app, spawn_app_with,
};

const DAY: i64 = 86_400;

/// Refreshes and expects success; returns the token response.
async fn refresh_ok(app: &TestApp, client: &Client, token: &str) -> Value {
    let response = app.refresh(client, token).await;
    let status = response.status();
    let body: Value = response.json().await.expect("json");
    assert_eq!(status, 200, "refresh should succeed: {body}");
    body
}

/// Reads an error response: its status and `error` code.
async fn oauth_error(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.expect("json error body");
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn assert_invalid_grant(app: &TestApp, client: &Client, token: &str, why: &str) {
    let (status, error) = oauth_error(app.refresh(client, token).await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_grant"), "{why}");
}

async fn refresh_with_scope(
    app: &TestApp,
    client: &Client,
    token: &str,
    scope: &str,
) -> reqwest::Response {
    app.token(
        Some(client),
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("scope", scope),
        ],
    )
    .await
}

async fn audit(app: &TestApp, action: &str) -> Vec<AuditRow> {
    app.admin
        .store
        .audit_query(&AuditFilter {
            action: Some(action.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("audit query")
}

async fn rotation_issues_a_new_token_and_retires_the_old(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let login = app.login(&client).await;
    let r0 = refresh_token_of(&login);

    let response = app.refresh(&client, &r0).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "read write");
    let r1 = refresh_token_of(&body);
    assert!(r1.starts_with("tsr_"));
    assert_ne!(r1, r0, "the refresh token rotates");
    let verified = app.verify(&access_token_of(&body), "tessera").await;
    assert_eq!(verified["preferred_username"], "alice");
    assert_eq!(verified["client_id"], "gateway");
    assert_ne!(
        claims(&access_token_of(&body))["jti"],
        claims(&access_token_of(&login))["jti"]
    );

    // The newest token works once more; the rotated one is refused. (Presenting r0 is reuse
    // and revokes the family, so check the newest first.)
    let body = refresh_ok(&app, &client, &r1).await;
    let r2 = refresh_token_of(&body);
    assert_ne!(r2, r1);
    assert_invalid_grant(&app, &client, &r0, "a rotated token is refused").await;

    let success = audit(&app, "token.refresh").await;
    assert_eq!(success.len(), 2, "one token.refresh row per rotation");
    // Postgres writes this row inside its one-statement rotation; it must read the same as
    // the row SQLite's multi-statement path writes.
    for row in &success {
        assert_eq!(row.username.as_deref(), Some("alice"));
        assert_eq!(row.client_id.as_deref(), Some("gateway"));
        assert_eq!(row.actor, "client:gateway");
        assert_eq!(row.outcome, "success");
        assert_eq!(row.target, success[0].target, "both in one family");
        assert!(!row.target.is_empty());
        let details: serde_json::Value = serde_json::from_str(&row.details).expect("json");
        assert_eq!(details, serde_json::json!({ "grant": "refresh_token" }));
    }
}

async fn reuse_of_a_rotated_token_revokes_the_family(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let r0 = refresh_token_of(&app.login(&client).await);
    let r1 = refresh_token_of(&refresh_ok(&app, &client, &r0).await);
    let r2 = refresh_token_of(&refresh_ok(&app, &client, &r1).await);

    // An attacker (or a confused client) presents the rotated r0.
    assert_invalid_grant(&app, &client, &r0, "reuse is refused").await;
    // The whole family is gone, including the newest token nobody reused.
    assert_invalid_grant(&app, &client, &r2, "the newest token of a reused family").await;
    assert_invalid_grant(&app, &client, &r1, "a middle token of a reused family").await;

    let detected = audit(&app, "refresh.reuse_detected").await;
    let revoked = audit(&app, "refresh.family_revoked").await;
    assert_eq!(detected.len(), 1, "{detected:?}");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(detected[0].username.as_deref(), Some("alice"));
    assert_eq!(detected[0].client_id.as_deref(), Some("gateway"));
    assert_eq!(detected[0].outcome, "denied");
    assert!(
        !detected[0].target.is_empty(),
        "the family id is the target"
    );
    assert_eq!(detected[0].target, revoked[0].target, "same family");
    let details: Value = serde_json::from_str(&revoked[0].details).expect("details json");
    assert_eq!(details["reason"], "reuse_detected");

    // A fresh login is unaffected.
    let fresh = refresh_token_of(&app.login(&client).await);
    refresh_ok(&app, &client, &fresh).await;
}

async fn reuse_within_the_grace_window_spares_the_family(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.tokens.refresh_reuse_grace = Duration::from_secs(30);
    })
    .await;
    let client = app.seed().await;
    let r0 = refresh_token_of(&app.login(&client).await);
    let r1 = refresh_token_of(&refresh_ok(&app, &client, &r0).await);

    // A retry after a lost response, 10 s later: refused, but nothing is revoked.
    app.clock.advance(10);
    assert_invalid_grant(&app, &client, &r0, "reuse within grace is still refused").await;
    assert!(audit(&app, "refresh.reuse_detected").await.is_empty());
    assert!(audit(&app, "refresh.family_revoked").await.is_empty());
    let r2 = refresh_token_of(&refresh_ok(&app, &client, &r1).await);

    // Past the window, reuse of r0 is reuse again: the family goes.
    app.clock.advance(40);
    assert_invalid_grant(&app, &client, &r0, "reuse after the grace window").await;
    assert_invalid_grant(&app, &client, &r2, "the family is revoked after the window").await;
    assert_eq!(audit(&app, "refresh.reuse_detected").await.len(), 1);
    assert_eq!(audit(&app, "refresh.family_revoked").await.len(), 1);
}

async fn concurrent_refreshes_of_one_token_succeed_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let r0 = refresh_token_of(&app.login(&client).await);

    let attempts = (0..50).map(|_| app.refresh(&client, &r0));
    let responses = join_all(attempts).await;
    let mut ok = 0;
    let mut invalid_grant = 0;
    let mut other = Vec::new();
    for response in responses {
        let status = response.status().as_u16();
        let body: Value = response.json().await.expect("json");
        match (status, body["error"].as_str()) {
            (200, _) => ok += 1,
            (400, Some("invalid_grant")) => invalid_grant += 1,
            _ => other.push((status, body)),
        }
    }
    assert!(other.is_empty(), "unexpected answers: {other:?}");
    assert_eq!(ok, 1, "exactly one refresh wins");
    assert_eq!(invalid_grant, 49);
}

/// Concurrent rotations of different chains share statements on Postgres: each caller must get
/// its own family back (its user, its scope), and its successor must continue its own chain.
async fn concurrent_refreshes_of_many_chains_each_get_their_own(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    for user in ["bob", "carol"] {
        app.admin
            .add_user(user, crate::helpers::PASSWORD, &["admin".into()], false)
            .await
            .expect("user");
    }
    // (user, scope, current refresh token)
    let mut chains = Vec::new();
    for user in ["alice", "bob", "carol"] {
        for scope in ["read", "write", "read write", "write"] {
            let response = app
                .token(
                    Some(&client),
                    &[
                        ("grant_type", "password"),
                        ("username", user),
                        ("password", crate::helpers::PASSWORD),
                        ("scope", scope),
                    ],
                )
                .await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("json");
            chains.push((user, scope, refresh_token_of(&body)));
        }
    }
    for round in 0..4 {
        let answers = join_all(
            chains
                .iter()
                .map(|(_, _, token)| refresh_ok(&app, &client, token)),
        )
        .await;
        for ((user, scope, token), body) in chains.iter_mut().zip(answers) {
            let access = claims(&access_token_of(&body));
            assert_eq!(access["preferred_username"], *user, "round {round}");
            assert_eq!(access["scope"], *scope, "round {round}");
            assert_eq!(body["scope"], *scope, "round {round}");
            *token = refresh_token_of(&body);
        }
    }
    let rotations = audit(&app, "token.refresh").await;
    assert_eq!(rotations.len(), 4 * chains.len());
}

/// The losers of a race are reuse (RFC 9700 §4.14.2): the family is revoked, and that one
/// state change is recorded once, however many requests detected it. Several rounds, because
/// how many losers overlap depends on timing.
async fn a_race_revokes_the_family_once(backend: Backend) {
    const ROUNDS: usize = 8;
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    for round in 0..ROUNDS {
        let r0 = refresh_token_of(&app.login(&client).await);
        let responses = join_all((0..20).map(|_| app.refresh(&client, &r0))).await;
        let mut winners = Vec::new();
        for response in responses {
            let status = response.status().as_u16();
            let body: Value = response.json().await.expect("json");
            match status {
                200 => winners.push(refresh_token_of(&body)),
                400 => assert_eq!(body["error"], "invalid_grant"),
                other => panic!("round {round}: unexpected {other}: {body}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}");
        assert_invalid_grant(
            &app,
            &client,
            &winners[0],
            "the family of a raced token is revoked",
        )
        .await;
    }
    assert!(!audit(&app, "refresh.reuse_detected").await.is_empty());
    let revoked = audit(&app, "refresh.family_revoked").await;
    let mut per_family = std::collections::BTreeMap::<String, usize>::new();
    for row in &revoked {
        *per_family.entry(row.target.clone()).or_default() += 1;
    }
    assert_eq!(per_family.len(), ROUNDS, "every raced family was revoked");
    assert!(
        per_family.values().all(|n| *n == 1),
        "one refresh.family_revoked row per revoked family, got {per_family:?}"
    );
}

async fn refresh_can_narrow_the_scope_but_the_token_keeps_the_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let r0 = refresh_token_of(&app.login(&client).await);

    let response = refresh_with_scope(&app, &client, &r0, "read").await;
    assert_eq!(response.status(), 200);
    let narrowed: Value = response.json().await.expect("json");
    assert_eq!(narrowed["scope"], "read");
    let verified = app.verify(&access_token_of(&narrowed), "tessera").await;
    assert_eq!(verified["scope"], "read");

    // RFC 6749 §6: the new refresh token has the scope of the original grant.
    let full = refresh_ok(&app, &client, &refresh_token_of(&narrowed)).await;
    assert_eq!(full["scope"], "read write");
    assert_eq!(claims(&access_token_of(&full))["scope"], "read write");

    // Asking for all of the original scope explicitly is fine too.
    let response = refresh_with_scope(&app, &client, &refresh_token_of(&full), "write read").await;
    assert_eq!(response.status(), 200);
}

async fn refresh_cannot_widen_the_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let response = app
        .token(
            Some(&client),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", crate::helpers::PASSWORD),
                ("scope", "read"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let login: Value = response.json().await.expect("json");
    assert_eq!(login["scope"], "read");
    let r0 = refresh_token_of(&login);

    // "write" is within the client's scopes but not within this grant's.
    let (status, error) =
        oauth_error(refresh_with_scope(&app, &client, &r0, "read write").await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_scope"));
    let (status, error) = oauth_error(refresh_with_scope(&app, &client, &r0, "write").await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_scope"));
    // A scope the client does not even have.
    let (status, error) = oauth_error(refresh_with_scope(&app, &client, &r0, "admin").await).await;
    assert_eq!((status, error.as_str()), (400, "invalid_scope"));

    // The refused requests changed nothing: the presented token still works, once.
    let body = refresh_ok(&app, &client, &r0).await;
    assert_eq!(body["scope"], "read");
    assert!(audit(&app, "refresh.reuse_detected").await.is_empty());
    refresh_ok(&app, &client, &refresh_token_of(&body)).await;
}

async fn roles_are_read_afresh_at_every_refresh(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let login = app.login(&client).await;
    assert_eq!(claims(&access_token_of(&login))["roles"], json!(["admin"]));

    app.admin
        .add_role("auditor", "Reads the audit log")
        .await
        .expect("role");
    app.admin
        .grant_role("alice", "auditor")
        .await
        .expect("grant");
    let body = refresh_ok(&app, &client, &refresh_token_of(&login)).await;
    let verified = app.verify(&access_token_of(&body), "tessera").await;
    assert_eq!(verified["roles"], json!(["admin", "auditor"]));

    app.admin
        .revoke_role("alice", "admin")
        .await
        .expect("revoke");
    let body = refresh_ok(&app, &client, &refresh_token_of(&body)).await;
    assert_eq!(claims(&access_token_of(&body))["roles"], json!(["auditor"]));

    app.admin
        .revoke_role("alice", "auditor")
        .await
        .expect("revoke");
    let body = refresh_ok(&app, &client, &refresh_token_of(&body)).await;
    assert_eq!(claims(&access_token_of(&body))["roles"], json!([]));
}

async fn disabling_a_user_ends_their_refresh_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let first = refresh_token_of(&app.login(&client).await);
    let second = refresh_token_of(&app.login(&client).await);

    app.admin
        .set_disabled("alice", true)
        .await
        .expect("disable");
    assert_invalid_grant(&app, &client, &first, "a disabled user cannot refresh").await;

    app.admin
        .set_disabled("alice", false)
        .await
        .expect("enable");
    assert_invalid_grant(&app, &client, &first, "enabling does not resurrect tokens").await;
    assert_invalid_grant(&app, &client, &second, "no session survives a disable").await;
    assert!(
        audit(&app, "refresh.reuse_detected").await.is_empty(),
        "a revoked token is not reuse"
    );

    let fresh = refresh_token_of(&app.login(&client).await);
    refresh_ok(&app, &client, &fresh).await;
}

async fn a_new_password_ends_refresh_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let r0 = refresh_token_of(&app.login(&client).await);
    let r1 = refresh_token_of(&refresh_ok(&app, &client, &r0).await);

    app.admin
        .set_password("alice", "a completely new passphrase")
        .await
        .expect("set password");
    assert_invalid_grant(&app, &client, &r1, "a password change revokes the session").await;

    let response = app
        .password_grant(&client, "alice", "a completely new passphrase")
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    refresh_ok(&app, &client, &refresh_token_of(&body)).await;
}

async fn deleting_a_user_ends_refresh_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let r0 = refresh_token_of(&app.login(&client).await);
    app.admin.delete_user("alice").await.expect("delete");
    assert_invalid_grant(&app, &client, &r0, "a deleted user cannot refresh").await;

    // A new user with the same name is someone else: the old token stays dead.
    app.admin
        .add_user("alice", crate::helpers::PASSWORD, &[], false)
        .await
        .expect("user again");
    assert_invalid_grant(&app, &client, &r0, "the old token stays dead").await;
}

async fn deleting_a_client_ends_its_refresh_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.seed().await;
    let mobile = app
        .add_client("mobile", &["password", "refresh_token"], &["read"])
        .await;
    let from_gateway = refresh_token_of(&app.login(&gateway).await);
    let from_mobile = refresh_token_of(&app.login(&mobile).await);

    app.admin.delete_client("gateway").await.expect("delete");
    // Registered again under the same id, it is a new client: the old sessions stay dead.
    let gateway = app
        .add_client(
            "gateway",
            &["password", "refresh_token"],
            &["read", "write"],
        )
        .await;
    assert_invalid_grant(&app, &gateway, &from_gateway, "the client was deleted").await;
    refresh_ok(&app, &mobile, &from_mobile).await;
}

async fn idle_refresh_tokens_expire(backend: Backend) {
    let app = spawn_app(backend).await;
    let idle = app.settings.tokens.refresh_idle_ttl.as_secs() as i64;
    let absolute = app.settings.tokens.refresh_absolute_ttl.as_secs() as i64;
    assert!(
        3 * idle < absolute,
        "the test assumes the default lifetimes"
    );
    let client = app.seed().await;
    let r0 = refresh_token_of(&app.login(&client).await);

    // Each use restarts the idle window, so a session used often outlives it.
    app.clock.advance(idle - 60);
    let r1 = refresh_token_of(&refresh_ok(&app, &client, &r0).await);
    app.clock.advance(idle - 60);
    let r2 = refresh_token_of(&refresh_ok(&app, &client, &r1).await);

    app.clock.advance(idle + 1);
    assert_invalid_grant(&app, &client, &r2, "idle past refresh_idle_ttl").await;
}

async fn a_session_ends_at_its_absolute_lifetime(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.tokens.refresh_absolute_ttl = Duration::from_secs(3600);
        s.tokens.refresh_idle_ttl = Duration::from_secs(DAY as u64);
    })
    .await;
    let client = app.seed().await;
    let mut token = refresh_token_of(&app.login(&client).await);

    // Used every 1000 s, never idle, yet the family ends an hour after the login.
    for _ in 0..3 {
        app.clock.advance(1000);
        token = refresh_token_of(&refresh_ok(&app, &client, &token).await);
    }
    app.clock.advance(601);
    assert_invalid_grant(&app, &client, &token, "past refresh_absolute_ttl").await;
}

/// RFC 9700 §4.14.2: a refresh token presented by a client it was not issued to is stolen or
/// leaked, so its family can no longer be trusted: refused, the family revoked (its access
/// tokens included), and audited as suspected theft.
async fn a_refresh_token_presented_by_another_client_revokes_its_family(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = crate::lifecycle::seed_with_introspection(&app).await;
    let mobile = app
        .add_client("mobile", &["password", "refresh_token"], &["read", "write"])
        .await;
    let login = app.login(&gateway).await;
    let token = refresh_token_of(&login);
    let access = access_token_of(&login);
    let untouched = refresh_token_of(&app.login(&gateway).await);

    assert_invalid_grant(&app, &mobile, &token, "another client's refresh token").await;
    assert_invalid_grant(
        &app,
        &gateway,
        &token,
        "its own client can no longer use it",
    )
    .await;
    let answer = crate::lifecycle::introspect(&app, &gateway, &access).await;
    assert_eq!(
        answer,
        json!({ "active": false }),
        "its access token ended too"
    );

    let suspected = audit(&app, "refresh.theft_suspected").await;
    let revoked = audit(&app, "refresh.family_revoked").await;
    assert_eq!(suspected.len(), 1, "{suspected:?}");
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(
        suspected[0].target,
        claims(&access)["sid"].as_str().expect("sid")
    );
    assert_eq!(suspected[0].target, revoked[0].target);
    assert_eq!(suspected[0].client_id.as_deref(), Some("mobile"));
    assert_eq!(suspected[0].username.as_deref(), Some("alice"));
    assert_eq!(suspected[0].outcome, "denied");
    let details: Value = serde_json::from_str(&suspected[0].details).expect("json");
    assert_eq!(details["owner_client"], "gateway");
    assert_eq!(details["reason"], "wrong_client");
    assert!(audit(&app, "refresh.reuse_detected").await.is_empty());

    // Presented again: refused and audited again, revoked once.
    assert_invalid_grant(&app, &mobile, &token, "again").await;
    assert_eq!(audit(&app, "refresh.theft_suspected").await.len(), 2);
    assert_eq!(audit(&app, "refresh.family_revoked").await.len(), 1);

    // Only that family: alice's other session goes on.
    refresh_ok(&app, &gateway, &untouched).await;

    // A client that may not refresh at all is refused as such, and the token it holds is
    // just as stolen.
    let service = app
        .add_client("reporting", &["client_credentials"], &["read"])
        .await;
    let response = app
        .http
        .post(app.url("/oauth/token"))
        .header("Authorization", basic(&service.id, &service.secret))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &untouched),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "unauthorized_client", "{body}");
    assert_invalid_grant(&app, &gateway, &untouched, "its family was revoked").await;
    let suspected = audit(&app, "refresh.theft_suspected").await;
    assert_eq!(suspected.len(), 3, "{suspected:?}");
    assert!(
        suspected
            .iter()
            .any(|row| row.client_id.as_deref() == Some("reporting")),
        "{suspected:?}"
    );
    assert_eq!(audit(&app, "refresh.family_revoked").await.len(), 2);
}

async fn malformed_and_unknown_refresh_tokens_are_invalid_grant(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    for token in [
        "tsr_unknown",
        "not-a-refresh-token",
        &format!("tsr_{}", "x".repeat(200)),
    ] {
        assert_invalid_grant(&app, &client, token, token).await;
    }
    let (status, error) = oauth_error(
        app.token(Some(&client), &[("grant_type", "refresh_token")])
            .await,
    )
    .await;
    assert_eq!((status, error.as_str()), (400, "invalid_request"));
}

both_backends!(
    rotation_issues_a_new_token_and_retires_the_old,
    reuse_of_a_rotated_token_revokes_the_family,
    reuse_within_the_grace_window_spares_the_family,
    concurrent_refreshes_of_one_token_succeed_once,
    concurrent_refreshes_of_many_chains_each_get_their_own,
    a_race_revokes_the_family_once,
    refresh_can_narrow_the_scope_but_the_token_keeps_the_grant,
    refresh_cannot_widen_the_scope,
    roles_are_read_afresh_at_every_refresh,
    disabling_a_user_ends_their_refresh_tokens,
    a_new_password_ends_refresh_tokens,
    deleting_a_user_ends_refresh_tokens,
    deleting_a_client_ends_its_refresh_tokens,
    idle_refresh_tokens_expire,
    a_session_ends_at_its_absolute_lifetime,
    a_refresh_token_presented_by_another_client_revokes_its_family,
    malformed_and_unknown_refresh_tokens_are_invalid_grant,
);
