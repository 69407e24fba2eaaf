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

both_backends!(
    password_grant_issues_verifiable_tokens,
    unknown_user_and_wrong_password_look_the_same,
    client_credentials_has_the_client_as_subject,
);
