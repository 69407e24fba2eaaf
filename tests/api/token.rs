//! The token endpoint: grants, errors, and the tokens it issues.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, PASSWORD, claims, spawn_app};

async fn password_grant_issues_verifiable_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let response = app.password_grant(&client, "alice", PASSWORD).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.headers()["pragma"], "no-cache");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    assert_eq!(body["scope"], "read write");
    assert!(
        body["refresh_token"]
            .as_str()
            .expect("refresh")
            .starts_with("tsr_")
    );

    let access = body["access_token"].as_str().expect("access");
    let verified = app.verify(access, "tessera").await;
    let user = app.admin.user("alice").await.expect("user");
    assert_eq!(verified["sub"], user.id.as_str());
    assert_eq!(verified["preferred_username"], "alice");
    assert_eq!(verified["roles"], serde_json::json!(["admin"]));
    assert_eq!(verified["client_id"], "gateway");
    assert_eq!(verified["iss"], "http://tessera.test");
    let exp = verified["exp"].as_i64().expect("exp");
    let iat = verified["iat"].as_i64().expect("iat");
    assert_eq!(exp - iat, 600);
    assert_eq!(verified["nbf"], verified["iat"]);
    assert!(verified["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

async fn unknown_user_and_wrong_password_look_the_same(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let wrong = app
        .password_grant(&client, "alice", "not the password")
        .await;
    let unknown = app
        .password_grant(&client, "mallory", "not the password")
        .await;
    assert_eq!(wrong.status(), 400);
    assert_eq!(unknown.status(), 400);
    let wrong: Value = wrong.json().await.expect("json");
    let unknown: Value = unknown.json().await.expect("json");
    assert_eq!(wrong, unknown);
    assert_eq!(wrong["error"], "invalid_grant");
}

async fn client_credentials_has_the_client_as_subject(backend: Backend) {
    let app = spawn_app(backend).await;
    let service = app
        .add_client("billing", &["client_credentials"], &["invoices"])
        .await;
    let response = app
        .token(Some(&service), &[("grant_type", "client_credentials")])
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert!(body.get("refresh_token").is_none());
    let verified = app
        .verify(body["access_token"].as_str().expect("access"), "tessera")
        .await;
    assert_eq!(verified["sub"], "billing");
    assert_eq!(verified["scope"], "invoices");
    assert!(verified.get("roles").is_none());
    assert!(
        claims(body["access_token"].as_str().expect("access"))
            .get("preferred_username")
            .is_none()
    );
}

async fn every_signing_algorithm_verifies_from_the_jwks(backend: Backend) {
    for (algorithm, kty) in [
        (tessera::crypto::keys::KeyAlgorithm::RS256, "RSA"),
        (tessera::crypto::keys::KeyAlgorithm::EdDSA, "OKP"),
    ] {
        let app = crate::helpers::spawn_app_with(backend, |s| s.keys.algorithm = algorithm).await;
        let client = app.seed().await;
        let body = app.login(&client).await;
        let access = body["access_token"].as_str().expect("access");
        let header = jsonwebtoken::decode_header(access).expect("header");
        assert_eq!(format!("{:?}", header.alg), algorithm.as_str());
        let jwks = app.jwks().await;
        assert_eq!(jwks["keys"][0]["kty"], kty);
        assert_eq!(jwks["keys"][0]["alg"], algorithm.as_str());
        assert!(jwks["keys"][0].get("d").is_none(), "no private material");
        let verified = app.verify(access, "tessera").await;
        assert_eq!(verified["preferred_username"], "alice");
    }
}

/// A hash made with weaker argon2 parameters is replaced after a successful login.
async fn outdated_password_hashes_are_upgraded(backend: Backend) {
    let app =
        crate::helpers::spawn_app_with(backend, |s| s.passwords.argon2_memory_kib = 2048).await;
    // Alice's password was set when the parameters were weaker.
    let mut old_settings = app.settings.clone();
    old_settings.passwords.argon2_memory_kib = 1024;
    let old_admin = tessera::admin::Admin::new(
        app.admin.store.clone(),
        app.clock.clone(),
        old_settings,
        "cli:test".into(),
    )
    .expect("admin");
    old_admin.add_role("admin", "").await.expect("role");
    old_admin
        .add_user("alice", PASSWORD, &["admin".into()], false)
        .await
        .expect("user");
    let client = app
        .add_client("gateway", &["password", "refresh_token"], &["read"])
        .await;
    let before = app.admin.user("alice").await.expect("user").password_hash;
    assert!(before.contains("m=1024"), "{before}");
    let body = app.login(&client).await;
    assert!(body["access_token"].is_string());
    let mut after = before.clone();
    for _ in 0..100 {
        after = app.admin.user("alice").await.expect("user").password_hash;
        if after != before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        after.contains("m=2048"),
        "re-hashed with the configured parameters: {after}"
    );
    // The new hash still verifies, and sessions were not revoked by the upgrade.
    let refresh = body["refresh_token"].as_str().expect("refresh");
    assert_eq!(app.refresh(&client, refresh).await.status(), 200);
    assert_eq!(
        app.password_grant(&client, "alice", PASSWORD)
            .await
            .status(),
        200
    );
}

both_backends!(
    every_signing_algorithm_verifies_from_the_jwks,
    outdated_password_hashes_are_upgraded,
    password_grant_issues_verifiable_tokens,
    unknown_user_and_wrong_password_look_the_same,
    client_credentials_has_the_client_as_subject,
);
