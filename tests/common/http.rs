//! Typed HTTP for a server under test: the answer to one request ([`Answer`]), the OAuth
//! requests (token grants, refresh, introspection, revocation) as a confidential client with
//! HTTP Basic, and what to read from a token response or a JWT.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

/// A client's id and secret, sent with HTTP Basic.
pub type Credentials<'a> = (&'a str, &'a str);

/// A client as registered: its id and the secret shown once.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub secret: String,
}

impl Client {
    pub fn credentials(&self) -> Credentials<'_> {
        (&self.id, &self.secret)
    }
}

/// A client for the tests that drive processes: every request has a deadline, so no loop can
/// hang on a dead peer.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
}

/// What came back for one request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The body as JSON, or as a JSON string when it is not JSON.
    pub body: Value,
    pub retry_after: bool,
    pub elapsed: Duration,
}

impl Answer {
    /// The OAuth `error` code, empty when there is none.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// A string member of the body; panics when it is missing.
    pub fn field(&self, name: &str) -> String {
        self.body[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {} {}", self.status, self.body))
            .to_owned()
    }

    pub fn is_invalid_grant(&self) -> bool {
        self.status == 400 && self.error() == "invalid_grant"
    }

    /// 503 temporarily_unavailable with Retry-After.
    pub fn is_unavailable(&self) -> bool {
        self.status == 503 && self.error() == "temporarily_unavailable" && self.retry_after
    }
}

/// Sends `req` and reads the whole answer.
pub async fn send(req: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let started = Instant::now();
    let r = req.send().await?;
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key(reqwest::header::RETRY_AFTER);
    let text = r.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer {
        status,
        body,
        retry_after,
        elapsed: started.elapsed(),
    })
}

/// A form POST to `path` at `base`, authenticated as `client` with Basic.
pub fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    (client_id, secret): Credentials<'_>,
    form: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    http.post(format!("{base}{path}"))
        .basic_auth(client_id, Some(secret))
        .form(form)
}

/// A token request with `form`.
pub async fn token(
    http: &reqwest::Client,
    base: &str,
    client: Credentials<'_>,
    form: &[(&str, &str)],
) -> Result<Answer, reqwest::Error> {
    send(post(http, base, "/oauth/token", client, form)).await
}

pub async fn password_grant(
    http: &reqwest::Client,
    base: &str,
    client: Credentials<'_>,
    username: &str,
    password: &str,
) -> Result<Answer, reqwest::Error> {
    token(
        http,
        base,
        client,
        &[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ],
    )
    .await
}

/// A password grant that must succeed; returns the token response.
pub async fn login_as(
    http: &reqwest::Client,
    base: &str,
    client: Credentials<'_>,
    username: &str,
    password: &str,
) -> Answer {
    let a = password_grant(http, base, client, username, password)
        .await
        .expect("login");
    assert_eq!(a.status, 200, "login: {}", a.body);
    a
}

pub async fn refresh(
    http: &reqwest::Client,
    base: &str,
    client: Credentials<'_>,
    token: &str,
) -> Result<Answer, reqwest::Error> {
    refresh_asking(http, base, client, token, &[]).await
}

/// A refresh with `extra` form fields (a scope, ...).
pub async fn refresh_asking(
    http: &reqwest::Client,
    base: &str,
    client: Credentials<'_>,
    token: &str,
    extra: &[(&str, &str)],
) -> Result<Answer, reqwest::Error> {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    form.extend_from_slice(extra);
    self::token(http, base, client, &form).await
}

/// Introspects `token`; the answer must be 200. Returns its body.
pub async fn introspect(
    http: &reqwest::Client,
    base: &str,
    client: Credentials<'_>,
    token: &str,
) -> Value {
    token_ok(http, base, "/oauth/introspect", client, token).await
}

/// Revokes `token`; the answer must be 200.
pub async fn revoke(http: &reqwest::Client, base: &str, client: Credentials<'_>, token: &str) {
    token_ok(http, base, "/oauth/revoke", client, token).await;
}

/// POSTs `token` to `path`; the answer must be 200. Returns its body.
async fn token_ok(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    client: Credentials<'_>,
    token: &str,
) -> Value {
    let a = send(post(http, base, path, client, &[("token", token)]))
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    a.body
}

pub async fn get(http: &reqwest::Client, url: &str) -> Answer {
    send(http.get(url)).await.expect("GET")
}

/// An `Authorization: Basic` value with id and secret form-encoded first (RFC 6749 §2.3.1).
pub fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| serde_urlencoded::to_string([("", s)]).expect("encode")[1..].to_owned();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

/// The refresh token of a token response.
pub fn refresh_token_of(body: &Value) -> String {
    body["refresh_token"]
        .as_str()
        .expect("a refresh token in the response")
        .to_owned()
}

/// The access token of a token response.
pub fn access_token_of(body: &Value) -> String {
    body["access_token"]
        .as_str()
        .expect("an access token in the response")
        .to_owned()
}

/// The `kid` in a JWT's header.
pub fn kid_of(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt)
        .expect("JWT header")
        .kid
        .expect("kid")
}

/// The claims of a JWT without verifying it (to inspect what was issued).
pub fn claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json")
}
