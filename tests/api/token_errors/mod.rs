//! Every error the token endpoint can answer (RFC 6749 §5.2), with its exact status, `error`
//! code, body shape and headers; client authentication in each of its forms (§2.3.1); and the
//! per-client settings that shape a successful answer (scope, audience, lifetime).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tessera::admin::ClientSpec;

use crate::both_backends;

mod client_auth;
mod grants;
mod request;
use crate::helpers::{Backend, Client, PASSWORD, TestApp, basic, claims, execute, spawn_app};

const FORM: &str = "application/x-www-form-urlencoded";

/// Checks an error response: status, `{"error", "error_description"}` and nothing else, JSON,
/// `Cache-Control: no-store`, and the Basic challenge exactly when the status is 401.
pub async fn expect_error(
    response: reqwest::Response,
    status: u16,
    code: &str,
    what: &str,
) -> Value {
    assert_eq!(response.status().as_u16(), status, "{what}: status");
    let headers = response.headers().clone();
    assert_eq!(
        headers.get(CACHE_CONTROL).map(|v| v.as_bytes()),
        Some(&b"no-store"[..]),
        "{what}: Cache-Control"
    );
    assert!(
        headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        "{what}: Content-Type is {:?}",
        headers.get(CONTENT_TYPE)
    );
    if status == 401 {
        assert_eq!(
            headers.get(WWW_AUTHENTICATE).map(|v| v.as_bytes()),
            Some(&br#"Basic realm="tessera""#[..]),
            "{what}: WWW-Authenticate"
        );
    } else {
        assert!(
            headers.get(WWW_AUTHENTICATE).is_none(),
            "{what}: unexpected WWW-Authenticate"
        );
    }
    let body: Value = response.json().await.expect("JSON error body");
    let object = body.as_object().expect("error body is an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["error", "error_description"], "{what}: body {body}");
    assert_eq!(body["error"], code, "{what}: body {body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{what}: error_description in {body}"
    );
    body
}

/// POSTs a raw body with the given Content-Type (none when `None`) and Authorization header.
async fn raw(
    app: &TestApp,
    content_type: Option<&str>,
    authorization: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    let mut req = app.http.post(app.url("/oauth/token")).body(body);
    if let Some(ct) = content_type {
        req = req.header(CONTENT_TYPE, ct);
    }
    if let Some(auth) = authorization {
        req = req.header(AUTHORIZATION, auth);
    }
    req.send().await.expect("request")
}

fn password_form() -> Vec<(&'static str, &'static str)> {
    vec![
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", PASSWORD),
    ]
}

async fn ok_json(response: reqwest::Response, what: &str) -> Value {
    let status = response.status();
    let body = response.text().await.expect("body");
    assert_eq!(status, 200, "{what}: {body}");
    serde_json::from_str(&body).expect("json")
}
