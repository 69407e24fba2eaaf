//! Key changes made with the CLI (another process) reach a running server within 2 s, with its
//! periodic reload (`keys.reload_interval`, 30 s) far away: NOTIFY on Postgres, a poll of a
//! change marker on SQLite. Revoking a key unpublishes it and ends every token it signed; a
//! retired key's signature on a token "issued" after its retirement is refused.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tessera::clock::Clock;
use tessera::crypto::jwt::JwtSigner;
use tessera::crypto::keys::Kek;
use tessera::startup::open_store;

use crate::both_backends;
use crate::helpers::{Backend, TestApp, access_token_of, claims, kid_of, spawn_app};
use crate::lifecycle::{
    etag_of, inactive, introspect, jwks_response, kids, seed_with_introspection,
};

/// How long a change may take to reach every instance.
const PROPAGATION: Duration = Duration::from_secs(2);

/// Polls `probe` until it returns `Some`, for at most [`PROPAGATION`] from `since`.
async fn within_propagation<T, F, Fut>(since: Instant, what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            since.elapsed() < PROPAGATION,
            "{what} did not reach the server within {PROPAGATION:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn cli_ok(app: &TestApp, args: &[&str]) -> String {
    let (ok, out, err) = app.cli(args).await;
    assert!(ok, "tessera {args:?} failed: {err}");
    out
}

/// A login's access token and the kid that signed it.
async fn signed_now(app: &TestApp, client: &crate::helpers::Client) -> (String, String) {
    let token = access_token_of(&app.login(client).await);
    let kid = kid_of(&token);
    (token, kid)
}

async fn key_changes_from_the_cli_reach_a_running_server(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.settings.keys.reload_interval,
        Duration::from_secs(30),
        "the periodic reload is not what carries the change"
    );
    let client = seed_with_introspection(&app).await;
    let (t0, k0) = signed_now(&app, &client).await;

    // rotate --now: the new key signs at once.
    let out = cli_ok(&app, &["key", "rotate", "--now"]).await;
    let changed = Instant::now();
    assert!(out.contains("signing now"), "{out}");
    let (t1, k1) = within_propagation(changed, "key rotate --now", || async {
        let (token, kid) = signed_now(&app, &client).await;
        (kid != k0).then_some((token, kid))
    })
    .await;
    assert!(
        out.contains(&k1),
        "the CLI named the key that now signs: {out}"
    );
    assert_eq!(introspect(&app, &client, &t0).await["active"], true);

    // retire the active key: a successor signs at once; its tokens stay valid.
    cli_ok(&app, &["key", "retire", &k1]).await;
    let changed = Instant::now();
    let (_, k2) = within_propagation(changed, "key retire", || async {
        let (token, kid) = signed_now(&app, &client).await;
        (kid != k1).then_some((token, kid))
    })
    .await;
    assert_ne!(k2, k0);
    assert_eq!(introspect(&app, &client, &t1).await["active"], true);
    assert!(
        kids(&app.jwks().await).contains(&k1),
        "retired: still published"
    );

    // revoke a retired key: it leaves the JWKS (new body, new ETag) and its tokens end.
    let before = jwks_response(&app, None).await;
    let etag_before = etag_of(&before);
    cli_ok(&app, &["key", "revoke", &k0]).await;
    let changed = Instant::now();
    within_propagation(changed, "key revoke (JWKS)", || async {
        (!kids(&app.jwks().await).contains(&k0)).then_some(())
    })
    .await;
    let after = jwks_response(&app, Some(&etag_before)).await;
    assert_eq!(after.status(), 200, "the old ETag no longer matches");
    assert_ne!(etag_of(&after), etag_before);
    assert_eq!(introspect(&app, &client, &t0).await, inactive());

    // revoke the active key: logins go on with a new key; its tokens end.
    let (t2, signing) = signed_now(&app, &client).await;
    assert_eq!(signing, k2);
    let out = cli_ok(&app, &["key", "revoke", &k2]).await;
    let changed = Instant::now();
    let k3 = within_propagation(changed, "key revoke of the active key", || async {
        let (_, kid) = signed_now(&app, &client).await;
        (kid != k2).then_some(kid)
    })
    .await;
    assert!(
        out.contains(&k3),
        "the CLI named the new signing key: {out}"
    );
    assert_eq!(introspect(&app, &client, &t2).await, inactive());
    let jwks = kids(&app.jwks().await);
    assert!(!jwks.contains(&k2) && jwks.contains(&k3), "{jwks:?}");
    let (t3, _) = signed_now(&app, &client).await;
    assert_eq!(introspect(&app, &client, &t3).await["active"], true);

    // What the CLI shows and refuses, and what the audit log kept.
    let listed: Value =
        serde_json::from_str(&cli_ok(&app, &["key", "list", "--json"]).await).expect("json");
    let state_of = |kid: &str| {
        listed
            .as_array()
            .expect("array")
            .iter()
            .find(|k| k["kid"] == kid)
            .map(|k| k["state"].clone())
    };
    assert_eq!(state_of(&k0), Some(json!("revoked")));
    assert_eq!(state_of(&k2), Some(json!("revoked")));
    assert_eq!(state_of(&k3), Some(json!("active")));
    let (ok, _, err) = app.cli(&["key", "revoke", &k2]).await;
    assert!(!ok && err.contains("already revoked"), "{err}");
    let (ok, _, err) = app.cli(&["key", "revoke", "no-such-kid"]).await;
    assert!(!ok && err.contains("no key"), "{err}");
    let revocations = app.audit_rows("key.revoke").await;
    assert_eq!(revocations.len(), 2);
}

/// Signs `claims` with a stored key's private half, as someone holding a leaked key (or an
/// instance with another clock) would.
async fn sign_with(app: &TestApp, kid: &str, claims: &Value) -> String {
    let store = open_store(&app.settings).await.expect("store");
    let stored = store
        .list_keys()
        .await
        .expect("keys")
        .into_iter()
        .find(|k| k.kid == kid)
        .expect("the key");
    let kek = Kek::from_base64(app.settings.keys.encryption_key.expose()).expect("kek");
    let pkcs8 = kek.open(kid, &stored.private_key).expect("open");
    let signer =
        JwtSigner::from_pkcs8(kid, stored.algorithm.parse().expect("alg"), &pkcs8).expect("key");
    signer.sign(claims).expect("sign")
}

/// The claims of `template` (a real token) with its times moved to `iat`.
fn issued_at(template: &str, iat: i64) -> Value {
    let mut c = claims(template);
    c["iat"] = json!(iat);
    c["nbf"] = json!(iat);
    c["exp"] = json!(iat + 600);
    c["jti"] = json!(uuid::Uuid::new_v4().to_string());
    c
}

async fn a_retired_key_cannot_mint_new_tokens_and_clocks_may_differ_a_little(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let (template, k0) = signed_now(&app, &client).await;
    let leeway = app.settings.tokens.clock_leeway.as_secs() as i64;
    assert_eq!(leeway, 5);

    // Another instance whose clock runs a little ahead: accepted; far ahead: not.
    let now = app.clock.now();
    let ahead = sign_with(&app, &k0, &issued_at(&template, now + leeway - 1)).await;
    assert_eq!(introspect(&app, &client, &ahead).await["active"], true);
    let far = sign_with(&app, &k0, &issued_at(&template, now + leeway + 5)).await;
    assert_eq!(introspect(&app, &client, &far).await, inactive());
    // exp has no leeway.
    let mut expired = issued_at(&template, now - 700);
    expired["exp"] = json!(now);
    let expired = sign_with(&app, &k0, &expired).await;
    assert_eq!(introspect(&app, &client, &expired).await, inactive());

    // Retire k0 at `retired`; the server hears of it.
    let (ok, _, err) = app.cli(&["key", "retire", &k0]).await;
    assert!(ok, "{err}");
    let changed = Instant::now();
    let retired = app
        .admin
        .store
        .list_keys()
        .await
        .expect("keys")
        .into_iter()
        .find(|k| k.kid == k0)
        .and_then(|k| k.retired_at)
        .expect("retired");
    within_propagation(changed, "key retire", || async {
        let (_, kid) = signed_now(&app, &client).await;
        (kid != k0).then_some(())
    })
    .await;

    // Later, the retired key (leaked, say) signs a token dated after its retirement.
    app.clock.advance(60);
    let minted = sign_with(&app, &k0, &issued_at(&template, app.clock.now())).await;
    assert_eq!(introspect(&app, &client, &minted).await, inactive());
    // One dated within the leeway of the retirement (an instance that had not heard yet).
    let late = sign_with(&app, &k0, &issued_at(&template, retired + leeway - 2)).await;
    assert_eq!(introspect(&app, &client, &late).await["active"], true);
    // What it really signed before retiring is still good.
    assert_eq!(introspect(&app, &client, &template).await["active"], true);
}

/// An instance whose clock is a little behind the operator's still stops signing with a key
/// revoked "in its future", and has a successor to sign with at once.
async fn a_revoked_key_stops_signing_on_an_instance_whose_clock_is_behind(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    // Behind by 3 s, once the first key's activation is more than that in the past.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    app.clock.advance(-3);
    let (_, k0) = signed_now(&app, &client).await;
    cli_ok(&app, &["key", "revoke", &k0]).await;
    let changed = Instant::now();
    within_propagation(changed, "key revoke", || async {
        (!kids(&app.jwks().await).contains(&k0)).then_some(())
    })
    .await;
    let (token, kid) = signed_now(&app, &client).await;
    assert_ne!(kid, k0, "the revoked key signed again");
    assert_eq!(introspect(&app, &client, &token).await["active"], true);
    let keys = app.admin.store.list_keys().await.expect("keys");
    let newest = keys.last().expect("keys");
    assert_eq!(kid, newest.kid, "the successor signs, no older key");
    assert!(
        newest.activates_at < newest.created_at,
        "activated a leeway early"
    );
}

/// Revoking the active key when the pending one was retired before it activated, and an older
/// key was superseded: neither may sign; a new key does.
async fn revoking_hands_over_to_a_new_key_when_no_other_may_sign(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let (_, k1) = signed_now(&app, &client).await;
    cli_ok(&app, &["key", "rotate", "--now"]).await;
    let k2 = within_propagation(Instant::now(), "rotate --now", || async {
        let (_, kid) = signed_now(&app, &client).await;
        (kid != k1).then_some(kid)
    })
    .await;
    let out = cli_ok(&app, &["key", "rotate"]).await;
    let k3 = out
        .split_whitespace()
        .nth(1)
        .expect("the new kid")
        .trim_end_matches(':')
        .to_owned();
    cli_ok(&app, &["key", "retire", &k3]).await;
    let out = cli_ok(&app, &["key", "revoke", &k2]).await;
    let changed = Instant::now();
    let (token, k4) = within_propagation(changed, "key revoke", || async {
        let (token, kid) = signed_now(&app, &client).await;
        (kid != k2).then_some((token, kid))
    })
    .await;
    assert!(![&k1, &k2, &k3].contains(&&k4), "{k4} must be a new key");
    assert!(out.contains(&k4), "{out}");
    assert_eq!(introspect(&app, &client, &token).await["active"], true);
    let listed: Value =
        serde_json::from_str(&cli_ok(&app, &["key", "list", "--json"]).await).expect("json");
    let active: Vec<&Value> = listed
        .as_array()
        .expect("array")
        .iter()
        .filter(|k| k["state"] == "active")
        .collect();
    assert_eq!(active.len(), 1, "{listed}");
    assert_eq!(active[0]["kid"], k4.as_str());
}

/// A key published ahead, then another made to sign at once: revoking that one may not fall
/// back on the older pending key (it can never sign again); a new key takes over.
async fn revoking_after_rotate_now_over_a_pending_key(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let (_, k1) = signed_now(&app, &client).await;
    cli_ok(&app, &["key", "rotate"]).await;
    cli_ok(&app, &["key", "rotate", "--now"]).await;
    let k3 = within_propagation(Instant::now(), "rotate --now", || async {
        let (_, kid) = signed_now(&app, &client).await;
        (kid != k1).then_some(kid)
    })
    .await;
    cli_ok(&app, &["key", "revoke", &k3]).await;
    let (token, k4) = within_propagation(Instant::now(), "key revoke", || async {
        let (token, kid) = signed_now(&app, &client).await;
        (kid != k3).then_some((token, kid))
    })
    .await;
    assert_ne!(k4, k1);
    assert_eq!(introspect(&app, &client, &token).await["active"], true);
    let keys = app.admin.store.list_keys().await.expect("keys");
    assert_eq!(
        keys.last().map(|k| k.kid.clone()),
        Some(k4),
        "a new key signs"
    );
}

/// Revoking a key replaced less than a clock leeway ago: where clocks are behind it would still
/// sign, so its successor's activation moves back by the leeway too.
async fn revoking_a_key_just_replaced_moves_its_successor_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let (_, k1) = signed_now(&app, &client).await;
    // k1 must have been signing for longer than the leeway.
    tokio::time::sleep(Duration::from_millis(6_500)).await;
    cli_ok(&app, &["key", "rotate", "--now"]).await;
    cli_ok(&app, &["key", "revoke", &k1]).await;
    let keys = app.admin.store.list_keys().await.expect("keys");
    let revoked = keys.iter().find(|k| k.kid == k1).expect("k1");
    let successor = keys.last().expect("k2");
    let leeway = app.settings.tokens.clock_leeway.as_secs() as i64;
    assert!(
        successor.activates_at <= revoked.revoked_at.expect("revoked") - leeway,
        "successor activates at {}, the revocation was at {:?}",
        successor.activates_at,
        revoked.revoked_at
    );
    assert_eq!(app.audit_rows("key.activate").await.len(), 1);
}

both_backends!(
    a_retired_key_cannot_mint_new_tokens_and_clocks_may_differ_a_little,
    a_revoked_key_stops_signing_on_an_instance_whose_clock_is_behind,
    key_changes_from_the_cli_reach_a_running_server,
    revoking_a_key_just_replaced_moves_its_successor_back,
    revoking_after_rotate_now_over_a_pending_key,
    revoking_hands_over_to_a_new_key_when_no_other_may_sign
);
