//! A token's life after issue: revocation (RFC 7009), introspection (RFC 7662),
//! expiry, signing-key rotation seen through the JWKS, instances sharing one database, and
//! clean-up of what has expired.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use tessera::admin::{Admin, ClientUpdate};
use tessera::clock::{Clock, ShiftedClock};
use tessera::oauth::KeyRing;
use tessera::oauth::keyring::{KeyError, KeyState, describe};
use tessera::startup::{Application, key_policy, load_kek, open_store};
use tessera::store::{AuditFilter, StoreError};

use crate::both_backends;
use crate::helpers::{
    Backend, Client, TestApp, TestDb, access_token_of, basic, claims, kid_of, refresh_token_of,
    spawn_app, spawn_app_with, test_settings, verify_with_jwks,
};

/// Seeds, and lets `gateway` introspect.
pub(crate) async fn seed_with_introspection(app: &TestApp) -> Client {
    let client = app.seed().await;
    app.admin
        .update_client(
            "gateway",
            ClientUpdate {
                introspect: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("allow introspection");
    client
}

pub(crate) async fn revoke(
    app: &TestApp,
    client: &Client,
    form: &[(&str, &str)],
) -> reqwest::Response {
    app.post_form("/oauth/revoke", Some(client), form).await
}

pub(crate) async fn introspect(app: &TestApp, client: &Client, token: &str) -> Value {
    let response = app
        .post_form("/oauth/introspect", Some(client), &[("token", token)])
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.expect("json")
}

pub(crate) async fn refresh_status(app: &TestApp, client: &Client, token: &str) -> (u16, Value) {
    let response = app.refresh(client, token).await;
    let status = response.status().as_u16();
    (status, response.json().await.expect("json"))
}

/// RFC 7662 §2.2: an inactive token gets `active: false` and nothing else.
pub(crate) fn inactive() -> Value {
    json!({ "active": false })
}

// ---------------------------------------------------------------------------------------------
// Revocation (RFC 7009)

async fn revoking_a_refresh_token_ends_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let login = app.login(&client).await;
    let token = refresh_token_of(&login);
    assert_eq!(introspect(&app, &client, &token).await["active"], true);

    let response = revoke(
        &app,
        &client,
        &[("token", &token), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");

    let (status, body) = refresh_status(&app, &client, &token).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    assert_eq!(introspect(&app, &client, &token).await, inactive());

    // Revoking again is fine (RFC 7009 §2.2: also for invalid tokens).
    assert_eq!(
        revoke(&app, &client, &[("token", &token)]).await.status(),
        200
    );

    let rows = app
        .admin
        .store
        .audit_query(&AuditFilter {
            action: Some("refresh.family_revoked".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].client_id.as_deref(), Some("gateway"));
}

async fn a_wrong_token_type_hint_does_not_stop_revocation(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let login = app.login(&client).await;
    let refresh = refresh_token_of(&login);
    let access = access_token_of(&login);

    // RFC 7009 §2.1: a wrong hint only means the server must look further.
    let response = revoke(
        &app,
        &client,
        &[("token", &refresh), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(introspect(&app, &client, &refresh).await, inactive());

    let response = revoke(
        &app,
        &client,
        &[("token", &access), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(introspect(&app, &client, &access).await, inactive());
}

async fn revoking_an_access_token_makes_it_inactive(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let login = app.login(&client).await;
    let access = access_token_of(&login);
    let other = access_token_of(&app.login(&client).await);
    let active = introspect(&app, &client, &access).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["jti"], claims(&access)["jti"]);

    let response = revoke(
        &app,
        &client,
        &[("token", &access), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(introspect(&app, &client, &access).await, inactive());
    // Only that token: another one of the same user and client stays active.
    assert_eq!(introspect(&app, &client, &other).await["active"], true);

    let rows = app
        .admin
        .store
        .audit_query(&AuditFilter {
            action: Some("access_token.revoked".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].target, claims(&access)["jti"].as_str().unwrap());
}

async fn revoking_another_clients_token_is_a_silent_no_op(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = seed_with_introspection(&app).await;
    let mobile = app
        .add_client("mobile", &["password", "refresh_token"], &["read"])
        .await;
    let login = app.login(&gateway).await;
    let refresh = refresh_token_of(&login);
    let access = access_token_of(&login);

    for token in [&refresh, &access] {
        let response = revoke(&app, &mobile, &[("token", token)]).await;
        assert_eq!(response.status(), 200, "no hint that the token exists");
        assert_eq!(introspect(&app, &gateway, token).await["active"], true);
    }
    let (status, _) = refresh_status(&app, &gateway, &refresh).await;
    assert_eq!(status, 200, "the owner's refresh token still works");
}

async fn revoking_unknown_or_garbage_tokens_answers_200(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let signed_elsewhere = {
        // A well-formed JWT whose signature no key of ours made.
        let login = app.login(&client).await;
        let access = access_token_of(&login);
        let mut parts: Vec<&str> = access.split('.').collect();
        parts[2] = "AAAA";
        parts.join(".")
    };
    for token in [
        "tsr_doesnotexist",
        "garbage",
        "a.b.c",
        signed_elsewhere.as_str(),
        &"x".repeat(1000),
    ] {
        let response = revoke(&app, &client, &[("token", token)]).await;
        assert_eq!(response.status(), 200, "token {token}");
    }

    // Still an authenticated, well-formed request.
    let response = revoke(&app, &client, &[("token_type_hint", "access_token")]).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");
    let response = app
        .post_form("/oauth/revoke", None, &[("token", "garbage")])
        .await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
}

// ---------------------------------------------------------------------------------------------
// Introspection (RFC 7662)

async fn introspection_needs_an_authenticated_permitted_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.seed().await;
    let access = access_token_of(&app.login(&gateway).await);

    // Authenticated, but not allowed to introspect.
    let response = app
        .post_form("/oauth/introspect", Some(&gateway), &[("token", &access)])
        .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "unauthorized_client");

    // No credentials at all, and wrong ones.
    let response = app
        .post_form("/oauth/introspect", None, &[("token", &access)])
        .await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
    let wrong = Client {
        id: "gateway".into(),
        secret: "tsc_wrong".into(),
    };
    let response = app
        .post_form("/oauth/introspect", Some(&wrong), &[("token", &access)])
        .await;
    assert_eq!(response.status(), 401);

    // A resource server registered for it may introspect anyone's tokens.
    let rs = app
        .add_client("resource-server", &["client_credentials"], &["introspect"])
        .await;
    app.admin
        .update_client(
            "resource-server",
            ClientUpdate {
                introspect: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    let answer = introspect(&app, &rs, &access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "gateway");

    // client_secret_post works as well as Basic.
    let response = app
        .post_form(
            "/oauth/introspect",
            None,
            &[
                ("token", &access),
                ("client_id", &rs.id),
                ("client_secret", &rs.secret),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
}

async fn introspection_describes_access_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let access = access_token_of(&app.login(&client).await);
    let token_claims = claims(&access);
    let user = app.admin.user("alice").await.expect("user");

    let answer = introspect(&app, &client, &access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["scope"], "read write");
    assert_eq!(answer["client_id"], "gateway");
    assert_eq!(answer["username"], "alice");
    assert_eq!(answer["sub"], user.id.as_str());
    assert_eq!(answer["iss"], crate::helpers::ISSUER);
    assert_eq!(answer["aud"], "tessera");
    assert_eq!(answer["exp"], token_claims["exp"]);
    assert_eq!(answer["iat"], token_claims["iat"]);
    assert_eq!(answer["jti"], token_claims["jti"]);

    for token in ["garbage", "tsr_unknown", "a.b.c"] {
        assert_eq!(
            introspect(&app, &client, token).await,
            inactive(),
            "{token}"
        );
    }
}

/// Concurrent introspections share database queries on Postgres (and skip the signature check
/// for tokens seen before): each caller must still get the answer about its own token, and a
/// revocation or a disabled user must show at once, also for tokens introspected before.
async fn concurrent_introspections_each_get_their_own_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = seed_with_introspection(&app).await;
    app.admin
        .add_user("bob", crate::helpers::PASSWORD, &["admin".into()], false)
        .await
        .expect("bob");
    let service = app
        .add_client("service", &["client_credentials"], &["read"])
        .await;
    // (token, still active at the end)
    let mut tokens: Vec<(String, bool)> = Vec::new();
    for user in ["alice", "bob"] {
        for _ in 0..2 {
            let response = app
                .password_grant(&gateway, user, crate::helpers::PASSWORD)
                .await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("json");
            tokens.push((access_token_of(&body), user == "alice"));
        }
    }
    for i in 0..16 {
        let response = app
            .token(Some(&service), &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        tokens.push((access_token_of(&body), i % 2 == 0));
    }

    let round = |expect_changes: bool| {
        let app = &app;
        let gateway = &gateway;
        let tokens = &tokens;
        async move {
            let asks =
                tokens
                    .iter()
                    .cycle()
                    .take(tokens.len() * 4)
                    .map(|(token, stays)| async move {
                        let answer = introspect(app, gateway, token).await;
                        let active = !expect_changes || *stays;
                        assert_eq!(answer["active"], active, "{answer}");
                        if active {
                            assert_eq!(
                                answer["jti"],
                                claims(token)["jti"],
                                "someone else's answer"
                            );
                        }
                    });
            join_all(asks).await;
        }
    };
    round(false).await;

    app.admin.set_disabled("bob", true).await.expect("disable");
    for (token, stays) in &tokens[4..] {
        if !stays {
            let response = revoke(&app, &service, &[("token", token)]).await;
            assert_eq!(response.status(), 200);
        }
    }
    round(true).await;
}

async fn introspection_of_refresh_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let r0 = refresh_token_of(&app.login(&client).await);
    let user = app.admin.user("alice").await.expect("user");

    let answer = introspect(&app, &client, &r0).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "refresh_token");
    assert_eq!(answer["client_id"], "gateway");
    assert_eq!(answer["username"], "alice");
    assert_eq!(answer["sub"], user.id.as_str());
    assert_eq!(answer["scope"], "read write");
    assert!(answer["exp"].as_i64().expect("exp") > app.clock.now());

    let (status, body) = refresh_status(&app, &client, &r0).await;
    assert_eq!(status, 200);
    let r1 = refresh_token_of(&body);
    assert_eq!(introspect(&app, &client, &r0).await, inactive(), "rotated");
    assert_eq!(introspect(&app, &client, &r1).await["active"], true);
    // Introspection is not use: it neither rotates nor counts as reuse.
    let (status, _) = refresh_status(&app, &client, &r1).await;
    assert_eq!(status, 200);

    // A refresh token past its idle lifetime is inactive too.
    let r2 = refresh_token_of(&app.login(&client).await);
    app.clock
        .advance(app.settings.tokens.refresh_idle_ttl.as_secs() as i64 + 1);
    assert_eq!(introspect(&app, &client, &r2).await, inactive(), "idle");
}

async fn an_access_token_is_active_until_it_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let access = access_token_of(&app.login(&client).await);
    let exp = claims(&access)["exp"].as_i64().expect("exp");
    let ttl = app.settings.tokens.access_ttl.as_secs() as i64;

    app.clock.advance(ttl - 10);
    assert!(app.clock.now() < exp);
    assert_eq!(introspect(&app, &client, &access).await["active"], true);
    let verified = app.verify(&access, "tessera").await;
    assert!(verified["exp"].as_i64().expect("exp") > app.clock.now());

    app.clock.advance(11);
    assert!(app.clock.now() >= exp);
    assert_eq!(introspect(&app, &client, &access).await, inactive());
    // And revoking an expired token is still a quiet 200.
    assert_eq!(
        revoke(&app, &client, &[("token", &access)]).await.status(),
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Signing keys and the JWKS

pub(crate) async fn jwks_response(app: &TestApp, if_none_match: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.url("/.well-known/jwks.json"));
    if let Some(tag) = if_none_match {
        request = request.header("If-None-Match", tag);
    }
    request.send().await.expect("jwks")
}

pub(crate) fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// Polls the JWKS (the server reloads keys every `keys.reload_interval`) until `done` holds.
async fn wait_for_jwks(app: &TestApp, what: &str, done: impl Fn(&[String]) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        last = app.jwks().await;
        if done(&kids(&last)) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the JWKS never showed {what}: {last}");
}

pub(crate) fn etag_of(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("etag")
        .expect("an ETag")
        .to_str()
        .expect("ascii")
        .to_owned()
}

async fn side_ring(app: &TestApp) -> Arc<KeyRing> {
    let store = open_store(&app.settings).await.expect("store");
    let kek = load_kek(&app.settings, &store, true).expect("kek");
    let clock: Arc<dyn Clock> = app.clock.clone();
    KeyRing::start(store, kek, clock, key_policy(&app.settings))
        .await
        .expect("key ring")
}

async fn key_rotation_full_cycle(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.keys.publish_ahead = Duration::from_secs(60);
        s.keys.jwks_max_age = Duration::from_secs(30);
        s.keys.reload_interval = Duration::from_millis(200);
    })
    .await;
    let client = seed_with_introspection(&app).await;
    let ttl = app.settings.tokens.access_ttl.as_secs() as i64;

    // One key, served with caching headers and a validator.
    let response = jwks_response(&app, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=30");
    let etag1 = etag_of(&response);
    let jwks1: Value = response.json().await.expect("json");
    let old_kid = kids(&jwks1).pop().expect("a key");
    assert_eq!(kids(&jwks1).len(), 1);
    let response = jwks_response(&app, Some(&etag1)).await;
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["cache-control"], "public, max-age=30");
    assert_eq!(etag_of(&response), etag1);
    assert!(response.bytes().await.expect("body").is_empty());

    let t0 = access_token_of(&app.login(&client).await);
    assert_eq!(kid_of(&t0), old_kid);

    // Rotate: the new key is published at once but does not sign yet.
    let ring = side_ring(&app).await;
    let new_kid = ring.rotate(false, "test").await.expect("rotate");
    assert_ne!(new_kid, old_kid);
    let jwks2 = wait_for_jwks(&app, "the new key", |k| k.contains(&new_kid)).await;
    assert!(kids(&jwks2).contains(&old_kid));
    let response = jwks_response(&app, Some(&etag1)).await;
    assert_eq!(response.status(), 200, "the old ETag no longer matches");
    let etag2 = etag_of(&response);
    assert_ne!(etag2, etag1);
    assert_eq!(jwks_response(&app, Some(&etag2)).await.status(), 304);

    // Just before activation the old key still signs.
    app.clock.advance(55);
    let t1 = access_token_of(&app.login(&client).await);
    assert_eq!(kid_of(&t1), old_kid, "a pending key does not sign");
    let t1_exp = claims(&t1)["exp"].as_i64().expect("exp");

    // Past publish_ahead the new key signs.
    app.clock.advance(6);
    let t2 = access_token_of(&app.login(&client).await);
    assert_eq!(
        kid_of(&t2),
        new_kid,
        "the new key signs after publish_ahead"
    );
    app.verify(&t2, "tessera").await;

    // Tokens signed by the old key still verify, from the JWKS, until their expiry.
    app.clock.advance(ttl - 60);
    assert!(app.clock.now() < t1_exp);
    let jwks = app.jwks().await;
    assert!(kids(&jwks).contains(&old_kid), "old key still published");
    let verified = verify_with_jwks(&t1, &jwks, "tessera").expect("old token verifies");
    assert!(verified["exp"].as_i64().expect("exp") > app.clock.now());
    assert_eq!(introspect(&app, &client, &t1).await["active"], true);
    assert_eq!(
        introspect(&app, &client, &t0).await,
        inactive(),
        "t0 has expired"
    );

    // Once every token it signed has expired, the old key leaves the JWKS.
    app.clock.advance(60);
    assert!(app.clock.now() >= t1_exp);
    assert_eq!(introspect(&app, &client, &t1).await, inactive());
    let jwks3 = wait_for_jwks(&app, "the old key gone", |k| !k.contains(&old_kid)).await;
    assert_eq!(kids(&jwks3), vec![new_kid.clone()]);
    let response = jwks_response(&app, Some(&etag2)).await;
    assert_eq!(response.status(), 200);
    assert_ne!(etag_of(&response), etag2);
    app.verify(&t2, "tessera").await;

    // The side ring sees the same states the server acts on.
    ring.reload().await.expect("reload");
    let states: Vec<(String, KeyState)> = ring
        .describe()
        .into_iter()
        .map(|k| (k.kid, k.state))
        .collect();
    assert_eq!(
        states,
        vec![(old_kid, KeyState::Expired), (new_kid, KeyState::Active)]
    );
}

// ---------------------------------------------------------------------------------------------
// Clean-up

async fn count(url: &str, table: &str) -> i64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .expect("count");
    let _ = conn.close().await;
    n
}

const TABLES: [&str; 8] = [
    "users",
    "roles",
    "user_roles",
    "clients",
    "signing_keys",
    "refresh_families",
    "refresh_tokens",
    "access_denylist",
];

async fn counts(app: &TestApp) -> std::collections::BTreeMap<&'static str, i64> {
    let mut out = std::collections::BTreeMap::new();
    for table in TABLES {
        out.insert(table, count(&app.db.url, table).await);
    }
    out
}

async fn gc_deletes_what_has_expired_and_nothing_else(backend: Backend) {
    const DAY: i64 = 86_400;
    let app = spawn_app_with(backend, |s| {
        s.tokens.refresh_idle_ttl = Duration::from_secs(DAY as u64);
        s.tokens.refresh_absolute_ttl = Duration::from_secs(2 * DAY as u64);
        s.audit.retention = Duration::from_secs(DAY as u64);
        s.maintenance.gc_interval = Duration::ZERO;
    })
    .await;
    let client = seed_with_introspection(&app).await;

    // T0: family A, rotated once; an access token X revoked.
    let login_a = app.login(&client).await;
    let (status, body) = refresh_status(&app, &client, &refresh_token_of(&login_a)).await;
    assert_eq!(status, 200);
    let a1 = refresh_token_of(&body);
    let x = access_token_of(&login_a);
    assert_eq!(revoke(&app, &client, &[("token", &x)]).await.status(), 200);

    // T0 + 1d + 100: family C, rotated once (both tokens idle-expire before the clean-up).
    app.clock.advance(DAY + 100);
    let login_c = app.login(&client).await;
    let (status, body) = refresh_status(&app, &client, &refresh_token_of(&login_c)).await;
    assert_eq!(status, 200);
    let c1 = refresh_token_of(&body);

    // T0 + 2d + 300: family A has expired. Family B, rotated once (the rotated b0 must stay for
    // reuse detection); an access token Y revoked, not yet expired; family D revoked, live.
    app.clock.advance(DAY + 200);
    let login_b = app.login(&client).await;
    let b0 = refresh_token_of(&login_b);
    let (status, body) = refresh_status(&app, &client, &b0).await;
    assert_eq!(status, 200);
    let b1 = refresh_token_of(&body);
    let y = access_token_of(&body);
    assert_eq!(revoke(&app, &client, &[("token", &y)]).await.status(), 200);
    let d0 = refresh_token_of(&app.login(&client).await);
    assert_eq!(revoke(&app, &client, &[("token", &d0)]).await.status(), 200);

    let before = counts(&app).await;
    assert_eq!(before["refresh_families"], 4, "A, B, C, D");
    assert_eq!(before["refresh_tokens"], 7, "a0 a1 c0 c1 b0 b1 d0");
    assert_eq!(before["access_denylist"], 2, "X and Y");
    let audit_before = app
        .admin
        .store
        .audit_query(&AuditFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("audit");
    let cutoff = app.clock.now() - DAY;
    let (old, kept): (Vec<_>, Vec<_>) = audit_before.iter().partition(|r| r.at < cutoff);
    assert!(!old.is_empty() && !kept.is_empty());
    assert!(
        audit_before.iter().all(|r| (r.at - cutoff).abs() > 30),
        "no audit row near the cut-off"
    );

    let report = serde_json::to_value(app.admin.gc().await.expect("gc")).expect("report");
    assert_eq!(report["refresh_families"], 2, "A expired, C idle: {report}");
    assert_eq!(report["denylist"], 1, "{report}");
    // Postgres drops whole day partitions: a row goes once its whole (UTC) day is past the
    // cut-off, so rows of the day the cut-off falls in may stay up to a day longer.
    let day_end = |at: i64| (at.div_euclid(DAY) + 1) * DAY;
    let (old, straddling): (Vec<_>, Vec<_>) = match backend {
        Backend::Sqlite => {
            assert_eq!(report["audit_rows"], old.len() as i64, "{report}");
            (old, Vec::new())
        }
        Backend::Postgres => {
            assert!(report["audit_partitions"].as_i64() >= Some(1), "{report}");
            old.into_iter().partition(|r| day_end(r.at) <= cutoff)
        }
    };
    assert!(!old.is_empty());

    let after = counts(&app).await;
    assert_eq!(
        after["refresh_families"], 2,
        "A (expired) and C (its live token idle-expired) went; B and D stay"
    );
    assert_eq!(after["refresh_tokens"], 3, "b0 b1 d0 stay");
    assert_eq!(after["access_denylist"], 1, "Y stays");
    for table in ["users", "roles", "user_roles", "clients", "signing_keys"] {
        assert_eq!(after[table], before[table], "{table} untouched");
    }
    let audit_after = app
        .admin
        .store
        .audit_query(&AuditFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("audit");
    let ids_after: Vec<i64> = audit_after.iter().map(|r| r.id).collect();
    assert!(
        kept.iter().all(|r| ids_after.contains(&r.id)),
        "recent audit rows stay"
    );
    assert!(
        old.iter().all(|r| !ids_after.contains(&r.id)),
        "old audit rows go"
    );
    assert!(
        straddling.iter().all(|r| ids_after.contains(&r.id)),
        "rows of the day the cut-off falls in wait for their day to pass"
    );

    // What stayed still behaves: Y is still revoked, D still revoked, A and C dead, and the
    // kept rotated b0 still triggers reuse detection.
    assert_eq!(introspect(&app, &client, &y).await, inactive());
    assert_eq!(introspect(&app, &client, &d0).await, inactive());
    for token in [&a1, &c1, &d0] {
        let (status, _) = refresh_status(&app, &client, token).await;
        assert_eq!(status, 400);
    }
    let (status, body) = refresh_status(&app, &client, &b1).await;
    assert_eq!(status, 200);
    let b2 = refresh_token_of(&body);
    let (status, _) = refresh_status(&app, &client, &b0).await;
    assert_eq!(status, 400);
    let (status, _) = refresh_status(&app, &client, &b2).await;
    assert_eq!(status, 400, "reuse of b0 revoked family B");

    // A second run finds nothing more.
    let again = serde_json::to_value(app.admin.gc().await.expect("gc")).expect("report");
    assert_eq!(again["refresh_families"], 0);
    assert_eq!(again["refresh_tokens"], 0);
    assert_eq!(again["denylist"], 0);
    assert_eq!(again["audit_rows"], 0);
    assert_eq!(again["audit_partitions"], 0);
}

both_backends!(
    revoking_a_refresh_token_ends_it,
    a_wrong_token_type_hint_does_not_stop_revocation,
    revoking_an_access_token_makes_it_inactive,
    revoking_another_clients_token_is_a_silent_no_op,
    revoking_unknown_or_garbage_tokens_answers_200,
    introspection_needs_an_authenticated_permitted_client,
    introspection_describes_access_tokens,
    introspection_of_refresh_tokens,
    concurrent_introspections_each_get_their_own_answer,
    an_access_token_is_active_until_it_expires,
    key_rotation_full_cycle,
    gc_deletes_what_has_expired_and_nothing_else,
);

// ---------------------------------------------------------------------------------------------
// Several instances on one Postgres database

mod postgres_instances {
    use super::*;

    /// Logs alice in at an instance by address.
    async fn login_at(http: &reqwest::Client, address: &str, client: &Client) -> Value {
        let response = http
            .post(format!("{address}/oauth/token"))
            .header("Authorization", basic(&client.id, &client.secret))
            .form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", crate::helpers::PASSWORD),
            ])
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 200);
        response.json().await.expect("json")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_instances_starting_together_create_one_signing_key() {
        for _round in 0..3 {
            let db = TestDb::new(Backend::Postgres).await;
            let settings = test_settings(&db);
            let clock = ShiftedClock::new();
            let (a, b) = tokio::join!(
                tokio::spawn(Application::build(settings.clone(), clock.clone())),
                tokio::spawn(Application::build(settings.clone(), clock.clone())),
            );
            let a = a.expect("join").expect("instance a builds");
            let b = b.expect("join").expect("instance b builds");
            let (port_a, port_b) = (a.port(), b.port());
            let metrics_port = a.metrics_port();
            let (handle_a, handle_b) = (a.handle(), b.handle());
            tokio::spawn(a.run_until_stopped());
            tokio::spawn(b.run_until_stopped());

            let store = open_store(&settings).await.expect("store");
            let keys = store.list_keys().await.expect("keys");
            assert_eq!(keys.len(), 1, "exactly one signing key: {keys:?}");

            let admin = Admin::new(store, clock.clone(), settings.clone(), "cli:test".into())
                .expect("admin");
            let app = TestApp {
                address: format!("http://127.0.0.1:{port_a}"),
                port: port_a,
                metrics_port,
                db,
                clock,
                http: reqwest::Client::new(),
                admin,
                settings,
                handle: handle_a,
            };
            let client = app.seed().await;
            let from_a = access_token_of(&app.login(&client).await);
            let from_b = access_token_of(
                &login_at(&app.http, &format!("http://127.0.0.1:{port_b}"), &client).await,
            );
            assert_eq!(kid_of(&from_a), keys[0].kid);
            assert_eq!(kid_of(&from_b), keys[0].kid);
            // Each instance's token verifies against the other's JWKS.
            let jwks_b: Value = app
                .http
                .get(format!("http://127.0.0.1:{port_b}/.well-known/jwks.json"))
                .send()
                .await
                .expect("jwks")
                .json()
                .await
                .expect("json");
            verify_with_jwks(&from_a, &jwks_b, "tessera").expect("a's token at b");
            app.verify(&from_b, "tessera").await;
            handle_b.stop(false).await;
            app.handle.stop(false).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_rotations_from_two_rings_never_make_two_active_keys() {
        let app = spawn_app(Backend::Postgres).await;
        let ring_a = side_ring(&app).await;
        let ring_b = side_ring(&app).await;
        let store = app.admin.store.clone();
        let before = store.list_keys().await.expect("keys");
        assert_eq!(before.len(), 1);

        let calls = (0..10).map(|i| {
            let ring = if i % 2 == 0 {
                ring_a.clone()
            } else {
                ring_b.clone()
            };
            tokio::spawn(async move { ring.rotate(false, "test").await })
        });
        let results: Vec<Result<String, KeyError>> = join_all(calls)
            .await
            .into_iter()
            .map(|r| r.expect("join"))
            .collect();
        let winners: Vec<String> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().cloned())
            .collect();
        for result in &results {
            if let Err(e) = result {
                assert!(
                    matches!(e, KeyError::Store(StoreError::Conflict(_))),
                    "a lost race is a conflict, not {e}"
                );
            }
        }
        assert!(!winners.is_empty(), "someone wins");

        let after = store.list_keys().await.expect("keys");
        assert_eq!(
            after.len(),
            before.len() + winners.len(),
            "one generation per winning call: {after:?}"
        );
        let generations: Vec<i64> = after.iter().map(|k| k.generation).collect();
        let expected: Vec<i64> = (1..=after.len() as i64).collect();
        assert_eq!(generations, expected);
        for kid in &winners {
            assert!(after.iter().any(|k| &k.kid == kid), "{kid} stored");
        }
        let now = app.clock.now();
        for at in [now, now + 30, now + 3600, now + 61, now + 86_400] {
            let active = describe(&after, at, 600)
                .into_iter()
                .filter(|k| k.state == KeyState::Active)
                .count();
            assert_eq!(active, 1, "exactly one active key at {at}");
        }

        // The server keeps signing, with a key its JWKS publishes.
        let client = app.seed().await;
        let token = access_token_of(&app.login(&client).await);
        app.verify(&token, "tessera").await;
    }
}
