//! Revoking a refresh family ends the access tokens issued with it (RFC 7009 §2.1): a user's
//! access token names its family as `sid`, and introspection refuses it once the family is
//! revoked, whichever way that happened.

use serde_json::Value;
use tessera::clock::Clock;

use crate::both_backends;
use crate::helpers::{
    Backend, Client, TestApp, access_token_of, claims, refresh_token_of, spawn_app,
};
use crate::lifecycle::{inactive, introspect, revoke, seed_with_introspection};

/// A fresh session of alice's: its access token, refresh token and family id.
async fn session(app: &TestApp, client: &Client) -> (String, String, String) {
    let login = app.login(client).await;
    let access = access_token_of(&login);
    let sid = claims(&access)["sid"]
        .as_str()
        .expect("a user token names its family")
        .to_owned();
    (access, refresh_token_of(&login), sid)
}

async fn active(app: &TestApp, client: &Client, token: &str) -> bool {
    let answer: Value = introspect(app, client, token).await;
    answer["active"] == true
}

async fn access_tokens_end_with_their_family(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let (bystander, _, bystander_sid) = session(&app, &client).await;

    // The family stays the token's sid across rotations.
    let (a0, r0, sid) = session(&app, &client).await;
    assert_ne!(sid, bystander_sid);
    let rotated = app.refresh(&client, &r0).await;
    assert_eq!(rotated.status(), 200);
    let rotated: Value = rotated.json().await.expect("json");
    let a1 = access_token_of(&rotated);
    assert_eq!(claims(&a1)["sid"].as_str(), Some(sid.as_str()));
    assert!(active(&app, &client, &a0).await && active(&app, &client, &a1).await);

    // 1. The client revokes the refresh token (RFC 7009): every access token of it ends.
    let response = revoke(&app, &client, &[("token", &refresh_token_of(&rotated))]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(introspect(&app, &client, &a0).await, inactive());
    assert_eq!(introspect(&app, &client, &a1).await, inactive());

    // 2. Reuse detection revokes the family.
    let (b0, r0, _) = session(&app, &client).await;
    let next: Value = app.refresh(&client, &r0).await.json().await.expect("json");
    let b1 = access_token_of(&next);
    app.clock
        .advance(app.settings.tokens.refresh_reuse_grace.as_secs() as i64 + 1);
    assert_eq!(app.refresh(&client, &r0).await.status(), 400, "reuse");
    assert_eq!(introspect(&app, &client, &b0).await, inactive());
    assert_eq!(introspect(&app, &client, &b1).await, inactive());

    // 3. An operator revokes the session with the CLI.
    let (c0, _, c_sid) = session(&app, &client).await;
    let (ok, _, err) = app.cli(&["token", "revoke", "--family", &c_sid]).await;
    assert!(ok, "{err}");
    assert_eq!(introspect(&app, &client, &c0).await, inactive());

    // Nothing above touched the other session.
    assert!(active(&app, &client, &bystander).await);

    // 4. A password change ends every token of the user issued before it.
    let (d0, _, _) = session(&app, &client).await;
    app.clock.advance(1);
    app.admin
        .set_password("alice", "a-brand-new-password")
        .await
        .expect("password");
    assert_eq!(introspect(&app, &client, &d0).await, inactive());
    assert_eq!(introspect(&app, &client, &bystander).await, inactive());
}

async fn a_disabled_user_has_no_active_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let (a0, r0, _) = session(&app, &client).await;
    let (ok, _, err) = app.cli(&["user", "disable", "alice"]).await;
    assert!(ok, "{err}");
    assert_eq!(introspect(&app, &client, &a0).await, inactive());
    assert_eq!(introspect(&app, &client, &r0).await, inactive());
    // Enabled again, the old tokens stay ended: disabling revoked their family.
    let (ok, _, err) = app.cli(&["user", "enable", "alice"]).await;
    assert!(ok, "{err}");
    assert_eq!(introspect(&app, &client, &a0).await, inactive());
}

/// Only tokens with a refresh family carry `sid`: client_credentials tokens and user tokens
/// of a client without the refresh grant have none, and stay active as before.
async fn tokens_without_a_family_have_no_sid(backend: Backend) {
    let app = spawn_app(backend).await;
    let inspector = seed_with_introspection(&app).await;
    let service = app
        .add_client("service", &["client_credentials"], &["read"])
        .await;
    let response = app
        .token(Some(&service), &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(response.status(), 200);
    let token = access_token_of(&response.json().await.expect("json"));
    assert!(claims(&token).get("sid").is_none());
    assert!(active(&app, &inspector, &token).await);

    let no_refresh = app.add_client("no-refresh", &["password"], &["read"]).await;
    let response = app
        .password_grant(&no_refresh, "alice", crate::helpers::PASSWORD)
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body.get("refresh_token").is_none());
    let token = access_token_of(&body);
    assert!(claims(&token).get("sid").is_none());
    assert!(active(&app, &inspector, &token).await);
}

/// Clean-up keeps a revoked family as long as an access token issued with it can live, even
/// when the family also expired or went idle meanwhile: deleting the row would make those
/// tokens active again.
async fn clean_up_keeps_a_revoked_family_while_its_access_tokens_live(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |s| {
        s.tokens.refresh_absolute_ttl = std::time::Duration::from_secs(400);
        s.tokens.refresh_idle_ttl = std::time::Duration::from_secs(300);
        s.tokens.refresh_reuse_detection = std::time::Duration::from_secs(60);
    })
    .await;
    let client = seed_with_introspection(&app).await;
    assert_eq!(app.settings.tokens.access_ttl.as_secs(), 600);
    // Family A will end by its absolute lifetime (400 s), family B by going idle (300 s),
    // each after its last access token was issued and the family revoked.
    let (_, ra, _) = session(&app, &client).await;
    app.clock.advance(200);
    let rotated: Value = app.refresh(&client, &ra).await.json().await.expect("json");
    let a1 = access_token_of(&rotated);
    revoke(&app, &client, &[("token", &refresh_token_of(&rotated))]).await;
    let (b0, rb, _) = session(&app, &client).await;
    revoke(&app, &client, &[("token", &rb)]).await;
    assert_eq!(introspect(&app, &client, &a1).await, inactive());
    assert_eq!(introspect(&app, &client, &b0).await, inactive());

    // Past A's absolute expiry and B's idle expiry, with both access tokens still live.
    app.clock.advance(350);
    assert!(claims(&a1)["exp"].as_i64() > Some(app.clock.now()));
    assert!(claims(&b0)["exp"].as_i64() > Some(app.clock.now()));
    app.admin.gc().await.expect("gc");
    assert_eq!(
        introspect(&app, &client, &a1).await,
        inactive(),
        "A stays revoked"
    );
    assert_eq!(
        introspect(&app, &client, &b0).await,
        inactive(),
        "B stays revoked"
    );

    // Once no access token of theirs can live, they go.
    app.clock.advance(600);
    let report = serde_json::to_value(app.admin.gc().await.expect("gc")).expect("report");
    assert!(report["refresh_families"].as_u64() >= Some(2), "{report}");
}

both_backends!(
    a_disabled_user_has_no_active_tokens,
    access_tokens_end_with_their_family,
    clean_up_keeps_a_revoked_family_while_its_access_tokens_live,
    tokens_without_a_family_have_no_sid
);
