//! A token's life after issue: revocation (RFC 7009), introspection (RFC 7662),
//! expiry, signing-key rotation seen through the JWKS, instances sharing one database, and
//! clean-up of what has expired.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};
use tessera::admin::{Admin, ClientUpdate};
use tessera::clock::{Clock, ShiftedClock};
use tessera::keys::{KeyError, KeyRing, KeyState, describe, key_policy, load_kek};
use tessera::startup::{Application, open_store};
use tessera::store::{AuditFilter, StoreError};

use crate::both_backends;

mod cleanup;
mod instances;
mod introspection;
mod keys;
mod revocation;
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
