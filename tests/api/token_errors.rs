//! Every error the token endpoint can answer (RFC 6749 §5.2), with its exact status, `error`
//! code, body shape and headers; client authentication in each of its forms (§2.3.1); and the
//! per-client settings that shape a successful answer (scope, audience, lifetime).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tessera::admin::ClientSpec;

use crate::both_backends;
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

async fn missing_grant_type_is_invalid_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let response = app
        .token(
            Some(&client),
            &[("username", "alice"), ("password", PASSWORD)],
        )
        .await;
    expect_error(response, 400, "invalid_request", "no grant_type").await;
    // RFC 6749 §3.1: an empty value is the same as an absent one.
    let response = app
        .token(
            Some(&client),
            &[
                ("grant_type", ""),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    expect_error(response, 400, "invalid_request", "empty grant_type").await;
}

async fn unknown_grant_types_are_unsupported(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    for grant in [
        "authorization_code",
        "implicit",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:device_code",
        "PASSWORD",
        "Password",
        "password ",
        " password",
        "password\t",
        "refresh-token",
        "passwordx",
    ] {
        let response = app
            .token(
                Some(&client),
                &[
                    ("grant_type", grant),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ],
            )
            .await;
        expect_error(
            response,
            400,
            "unsupported_grant_type",
            &format!("{grant:?}"),
        )
        .await;
    }
}

/// RFC 6749 §5.2: invalid_request covers unsupported parameter values "other than grant
/// type"; a grant type the server does not support, NUL or not, is unsupported_grant_type.
/// A NUL byte makes any parameter malformed, grant_type included: the form is refused as an
/// invalid request before the grant type is looked at, and the value is never truncated.
async fn grant_type_with_nul_is_a_malformed_request(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let response = app
        .token(
            Some(&client),
            &[
                ("grant_type", "password\u{0}"),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    expect_error(response, 400, "invalid_request", "password\\0").await;
}

async fn repeated_parameters_are_invalid_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let auth = basic(&client.id, &client.secret);
    let pw = format!("password={}", PASSWORD.replace(' ', "+"));
    for body in [
        format!("grant_type=password&grant_type=password&username=alice&{pw}"),
        format!("grant_type=password&username=alice&username=alice&{pw}"),
        format!("grant_type=password&username=alice&{pw}&{pw}"),
        format!("grant_type=password&username=alice&{pw}&scope=read&scope=write"),
        // An empty repeat is still a repeat.
        format!("grant_type=password&grant_type=&username=alice&{pw}"),
        format!("grant_type=password&username=alice&{pw}&scope=&scope=read"),
    ] {
        let response = raw(&app, Some(FORM), Some(&auth), body.clone()).await;
        expect_error(response, 400, "invalid_request", &body).await;
    }
}

async fn only_form_bodies_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let auth = basic(&client.id, &client.secret);
    let form = serde_urlencoded::to_string(password_form()).expect("form");
    let json_body =
        json!({"grant_type": "password", "username": "alice", "password": PASSWORD}).to_string();
    let multipart = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\npassword\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nalice\r\n\
         --XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\n{PASSWORD}\r\n--XyZ--\r\n"
    );
    let cases: Vec<(Option<&str>, String)> = vec![
        (Some("application/json"), json_body.clone()),
        (Some("application/json"), form.clone()),
        (Some("text/plain"), form.clone()),
        (Some("text/plain; charset=utf-8"), form.clone()),
        (Some("multipart/form-data; boundary=XyZ"), multipart),
        (None, form.clone()),
        (Some(""), form.clone()),
        (
            Some("application/x-www-form-urlencoded; charset=latin1"),
            form.clone(),
        ),
        (
            Some("application/x-www-form-urlencoded; charset=ISO-8859-1"),
            form.clone(),
        ),
        (Some("application/x-www-form-urlencodedx"), form.clone()),
        (Some("application/*"), form.clone()),
        (Some("*/*"), form.clone()),
    ];
    for (content_type, body) in cases {
        let response = raw(&app, content_type, Some(&auth), body).await;
        expect_error(
            response,
            400,
            "invalid_request",
            &format!("Content-Type {content_type:?}"),
        )
        .await;
    }
    // The form type is matched case-insensitively and charset=utf-8 is fine.
    for content_type in [
        "application/x-www-form-urlencoded; charset=utf-8",
        "application/x-www-form-urlencoded;charset=\"UTF-8\"",
        "Application/X-WWW-Form-Urlencoded",
    ] {
        let response = raw(&app, Some(content_type), Some(&auth), form.clone()).await;
        ok_json(response, content_type).await;
    }
}

async fn oversized_body_is_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let auth = basic(&client.id, &client.secret);
    let padding = "x".repeat(16 * 1024);
    let body = format!("grant_type=password&username=alice&password=pw&pad={padding}");
    let response = raw(&app, Some(FORM), Some(&auth), body).await;
    expect_error(response, 413, "invalid_request", "17 KiB body").await;
    // Exactly at the limit is read (and then refused for what it says, not for its size).
    let head = "grant_type=password&username=alice&password=wrong-password&pad=";
    let body = format!("{head}{}", "y".repeat(16 * 1024 - head.len()));
    assert_eq!(body.len(), 16 * 1024);
    let response = raw(&app, Some(FORM), Some(&auth), body).await;
    expect_error(response, 400, "invalid_grant", "16 KiB body").await;
}

async fn failed_client_authentication_is_401_with_a_basic_challenge(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let form = serde_urlencoded::to_string(password_form()).expect("form");
    let wrong_secret = basic(&client.id, "tsc_not-the-secret");
    let unknown_client = basic("nobody", &client.secret);
    let long = format!("Basic {}", "A".repeat(5000));
    let long_secret = basic(
        &client.id,
        &format!("{}{}", client.secret, "s".repeat(3100)),
    );
    let headers: Vec<(&str, Vec<u8>)> = vec![
        ("wrong secret", wrong_secret.into_bytes()),
        ("unknown client", unknown_client.into_bytes()),
        ("empty secret", basic(&client.id, "").into_bytes()),
        ("scheme only", b"Basic".to_vec()),
        ("scheme and space", b"Basic ".to_vec()),
        ("not base64", b"Basic !!!not-base64!!!".to_vec()),
        (
            "base64url alphabet",
            format!(
                "Basic {}",
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .encode(format!("{}:{}?>", client.id, client.secret))
            )
            .into_bytes(),
        ),
        (
            "no colon",
            format!("Basic {}", STANDARD.encode(&client.id)).into_bytes(),
        ),
        (
            "empty id",
            format!("Basic {}", STANDARD.encode(format!(":{}", client.secret))).into_bytes(),
        ),
        (
            "Bearer scheme",
            format!(
                "Bearer {}",
                STANDARD.encode(format!("{}:{}", client.id, client.secret))
            )
            .into_bytes(),
        ),
        (
            "Digest scheme",
            br#"Digest username="gateway", realm="tessera""#.to_vec(),
        ),
        (
            "invalid UTF-8 after decoding",
            format!("Basic {}", STANDARD.encode(b"gate\xffway:\xfe\xfe")).into_bytes(),
        ),
        (
            "invalid UTF-8 in the percent-decoded id",
            format!(
                "Basic {}",
                STANDARD.encode(format!("gateway%FF:{}", client.secret))
            )
            .into_bytes(),
        ),
        ("raw non-ASCII header bytes", b"Basic \xff\xfe\xfd".to_vec()),
        ("over 4 KiB", long.into_bytes()),
        ("long secret, header over 4 KiB", long_secret.into_bytes()),
    ];
    for (what, header) in headers {
        let value = reqwest::header::HeaderValue::from_bytes(&header).expect("header value");
        let response = app
            .http
            .post(app.url("/oauth/token"))
            .header(CONTENT_TYPE, FORM)
            .header(AUTHORIZATION, value)
            .body(form.clone())
            .send()
            .await
            .expect("request");
        expect_error(response, 401, "invalid_client", what).await;
    }

    // No client authentication at all.
    let response = app.token(None, &password_form()).await;
    expect_error(response, 401, "invalid_client", "no client auth").await;

    // client_secret_post with a wrong secret and with an unknown client.
    for (id, secret) in [
        (client.id.as_str(), "tsc_not-the-secret"),
        ("nobody", client.secret.as_str()),
    ] {
        let mut form = password_form();
        form.push(("client_id", id));
        form.push(("client_secret", secret));
        let response = app.token(None, &form).await;
        expect_error(response, 401, "invalid_client", &format!("post {id}")).await;
    }
    // Unknown client and wrong secret look the same from outside.
    let a = expect_error(
        app.token(
            Some(&Client {
                id: client.id.clone(),
                secret: "tsc_wrong".into(),
            }),
            &password_form(),
        )
        .await,
        401,
        "invalid_client",
        "wrong secret",
    )
    .await;
    let b = expect_error(
        app.token(
            Some(&Client {
                id: "nobody".into(),
                secret: "tsc_wrong".into(),
            }),
            &password_form(),
        )
        .await,
        401,
        "invalid_client",
        "unknown client",
    )
    .await;
    assert_eq!(a, b);
}

async fn conflicting_client_credentials_are_invalid_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let other = app
        .add_client("other", &["password", "refresh_token"], &["read"])
        .await;
    let form = serde_urlencoded::to_string(password_form()).expect("form");

    // Two Authorization headers, even two identical valid ones.
    for second in [
        basic(&client.id, &client.secret),
        basic(&other.id, &other.secret),
    ] {
        let response = app
            .http
            .post(app.url("/oauth/token"))
            .header(CONTENT_TYPE, FORM)
            .header(AUTHORIZATION, basic(&client.id, &client.secret))
            .header(AUTHORIZATION, second)
            .body(form.clone())
            .send()
            .await
            .expect("request");
        expect_error(
            response,
            400,
            "invalid_request",
            "two Authorization headers",
        )
        .await;
    }

    // Basic and client_secret in the body: two mechanisms (RFC 6749 §2.3).
    let mut with_secret = password_form();
    with_secret.push(("client_secret", &client.secret));
    let response = app.token(Some(&client), &with_secret).await;
    expect_error(response, 400, "invalid_request", "Basic + client_secret").await;
    let mut with_both = password_form();
    with_both.push(("client_id", &client.id));
    with_both.push(("client_secret", &client.secret));
    let response = app.token(Some(&client), &with_both).await;
    expect_error(
        response,
        400,
        "invalid_request",
        "Basic + client_id + client_secret",
    )
    .await;

    // Basic for one client, client_id of another in the body.
    let mut mismatched = password_form();
    mismatched.push(("client_id", &other.id));
    let response = app.token(Some(&client), &mismatched).await;
    expect_error(response, 400, "invalid_request", "Basic + other client_id").await;

    // A secret without an id.
    let mut orphan = password_form();
    orphan.push(("client_secret", &client.secret));
    let response = app.token(None, &orphan).await;
    expect_error(response, 400, "invalid_request", "client_secret alone").await;

    // Basic plus the same client_id in the body is fine.
    let mut same = password_form();
    same.push(("client_id", &client.id));
    ok_json(
        app.token(Some(&client), &same).await,
        "Basic + same client_id",
    )
    .await;
}

async fn client_secret_post_authenticates(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let mut form = password_form();
    form.push(("client_id", &client.id));
    form.push(("client_secret", &client.secret));
    let body = ok_json(app.token(None, &form).await, "client_secret_post").await;
    let access = body["access_token"].as_str().expect("access token");
    assert_eq!(claims(access)["client_id"], "gateway");
    assert!(body["refresh_token"].as_str().is_some());
}

/// RFC 6749 §2.3.1: the id and secret are form-urlencoded before they are joined with ':' and
/// Base64-encoded, so ids containing ':' or '@' survive.
async fn client_secret_basic_form_encodes_id_and_secret(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed().await;
    let client = app
        .add_client("edge:gw@corp.example", &["password"], &["read"])
        .await;
    // helpers::basic form-urlencodes both halves.
    let encoded = basic(&client.id, &client.secret);
    assert!(
        String::from_utf8(
            STANDARD
                .decode(encoded.trim_start_matches("Basic "))
                .expect("b64")
        )
        .expect("utf8")
        .starts_with("edge%3Agw%40corp.example:")
    );
    let body = ok_json(
        app.token(Some(&client), &password_form()).await,
        "encoded Basic",
    )
    .await;
    assert_eq!(
        claims(body["access_token"].as_str().expect("access"))["client_id"],
        client.id
    );
    assert!(
        body.get("refresh_token").is_none(),
        "no refresh_token grant registered"
    );

    // Without the encoding the id ends at the first ':' and names another (unknown) client.
    let unencoded = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", client.id, client.secret))
    );
    let response = raw(
        &app,
        Some(FORM),
        Some(&unencoded),
        serde_urlencoded::to_string(password_form()).expect("form"),
    )
    .await;
    expect_error(response, 401, "invalid_client", "unencoded ':' in the id").await;

    // '@' alone need not be encoded ('%40' and '@' decode the same), '+' would be a space.
    let at_client = app.add_client("svc@corp", &["password"], &["read"]).await;
    let plain = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", at_client.id, at_client.secret))
    );
    let response = raw(
        &app,
        Some(FORM),
        Some(&plain),
        serde_urlencoded::to_string(password_form()).expect("form"),
    )
    .await;
    ok_json(response, "unencoded '@'").await;

    // The same client through client_secret_post.
    let mut form = password_form();
    form.push(("client_id", &client.id));
    form.push(("client_secret", &client.secret));
    ok_json(app.token(None, &form).await, "post with ':' in the id").await;
}

/// A public client authenticates by `client_id` alone. It may not use the password grant
/// (RFC 9700 §2.4): the admin layer refuses to register one that does, and the token endpoint
/// refuses one that an older database still holds.
/// A UUID-shaped client id, which registration refuses, held by an older database: its
/// client_credentials tokens would carry a `sub` that looks like a user's, so it gets none.
async fn a_uuid_shaped_client_id_gets_no_client_credentials_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let service = app
        .add_client("service", &["client_credentials"], &["read"])
        .await;
    let uuid = "3f2504e0-4f89-11d3-9a0c-0305e82c3301";
    execute(
        &app,
        &format!("UPDATE clients SET client_id = '{uuid}' WHERE client_id = 'service'"),
    )
    .await;
    let renamed = crate::helpers::Client {
        id: uuid.into(),
        secret: service.secret.clone(),
    };
    expect_error(
        app.token(Some(&renamed), &[("grant_type", "client_credentials")])
            .await,
        400,
        "unauthorized_client",
        "client_credentials for a UUID-shaped client id",
    )
    .await;
}

async fn public_clients_authenticate_by_id_alone(backend: Backend) {
    let app = spawn_app(backend).await;
    let confidential = app.seed().await;
    // A client that logged users in before the rule, made public behind the admin layer's back:
    // what an older database can hold.
    let mobile = app
        .add_client("mobile", &["password", "refresh_token"], &["read"])
        .await;
    let body = ok_json(
        app.password_grant(&mobile, "alice", PASSWORD).await,
        "login while confidential",
    )
    .await;
    let refresh = body["refresh_token"].as_str().expect("refresh token");
    execute(
        &app,
        "UPDATE clients SET secret_hash = NULL WHERE client_id = 'mobile'",
    )
    .await;

    let mut form = password_form();
    form.push(("client_id", "mobile"));
    expect_error(
        app.token(None, &form).await,
        400,
        "unauthorized_client",
        "password grant for a public client",
    )
    .await;
    // The refresh grant works for it by id alone.
    let body = ok_json(
        app.token(
            None,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", "mobile"),
            ],
        )
        .await,
        "public refresh",
    )
    .await;
    assert!(body["refresh_token"].as_str().is_some());
    assert_eq!(body["scope"], "read");
    assert_eq!(
        claims(body["access_token"].as_str().expect("access"))["client_id"],
        "mobile"
    );

    // A public client presenting any secret, in the body or through Basic.
    let mut with_secret = password_form();
    with_secret.push(("client_id", "mobile"));
    with_secret.push(("client_secret", "tsc_anything"));
    expect_error(
        app.token(None, &with_secret).await,
        401,
        "invalid_client",
        "public + client_secret",
    )
    .await;
    let public_basic = Client {
        id: "mobile".into(),
        secret: "tsc_anything".into(),
    };
    expect_error(
        app.token(Some(&public_basic), &password_form()).await,
        401,
        "invalid_client",
        "public via Basic",
    )
    .await;

    // A confidential client cannot leave its secret out.
    let mut bare = password_form();
    bare.push(("client_id", &confidential.id));
    expect_error(
        app.token(None, &bare).await,
        401,
        "invalid_client",
        "confidential without secret",
    )
    .await;
    // Nor can an unknown id pass as public.
    let mut unknown = password_form();
    unknown.push(("client_id", "no-such-app"));
    expect_error(
        app.token(None, &unknown).await,
        401,
        "invalid_client",
        "unknown public id",
    )
    .await;
}

async fn unregistered_grant_is_unauthorized_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.seed().await;
    let service = app
        .add_client("billing", &["client_credentials"], &["invoices"])
        .await;
    let password_only = app.add_client("kiosk", &["password"], &["read"]).await;
    expect_error(
        app.token(Some(&service), &password_form()).await,
        400,
        "unauthorized_client",
        "password grant for a client_credentials client",
    )
    .await;
    expect_error(
        app.token(Some(&gateway), &[("grant_type", "client_credentials")])
            .await,
        400,
        "unauthorized_client",
        "client_credentials for a user-grant client",
    )
    .await;
    let refresh = app.login(&gateway).await["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    expect_error(
        app.refresh(&password_only, &refresh).await,
        400,
        "unauthorized_client",
        "refresh grant for a password-only client",
    )
    .await;
}

async fn scope_errors_are_invalid_scope(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    for scope in [
        "admin",
        "read admin",
        "READ",
        "read write delete",
        "invoices",
        // Malformed: outside NQCHAR (RFC 6749 §3.3) or too long.
        "read\"",
        "re\\ad",
        "réad",
        "read\u{7f}",
        "read\twrite",
        "read\u{200b}",
        "📖",
        &"r".repeat(129),
    ] {
        let mut form = password_form();
        form.push(("scope", scope));
        let response = app.token(Some(&client), &form).await;
        expect_error(response, 400, "invalid_scope", &format!("scope {scope:?}")).await;
    }
    // The refresh grant cannot widen or smuggle either.
    let refresh = {
        let mut form = password_form();
        form.push(("scope", "read"));
        ok_json(app.token(Some(&client), &form).await, "narrow login").await["refresh_token"]
            .as_str()
            .expect("refresh")
            .to_owned()
    };
    for scope in ["read write", "read\""] {
        let response = app
            .token(
                Some(&client),
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &refresh),
                    ("scope", scope),
                ],
            )
            .await;
        expect_error(
            response,
            400,
            "invalid_scope",
            &format!("refresh scope {scope:?}"),
        )
        .await;
    }
}

async fn disabled_user_looks_like_a_wrong_password(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    app.admin
        .add_user("bob", PASSWORD, &[], false)
        .await
        .expect("bob");
    let wrong = expect_error(
        app.password_grant(&client, "bob", "not the password").await,
        400,
        "invalid_grant",
        "wrong password",
    )
    .await;
    app.admin.set_disabled("bob", true).await.expect("disable");
    let disabled = expect_error(
        app.password_grant(&client, "bob", PASSWORD).await,
        400,
        "invalid_grant",
        "disabled user",
    )
    .await;
    assert_eq!(disabled, wrong);
    let unknown = expect_error(
        app.password_grant(&client, "carol", PASSWORD).await,
        400,
        "invalid_grant",
        "unknown user",
    )
    .await;
    assert_eq!(unknown, wrong);
    app.admin.set_disabled("bob", false).await.expect("enable");
    ok_json(
        app.password_grant(&client, "bob", PASSWORD).await,
        "re-enabled",
    )
    .await;
}

async fn missing_credentials_are_invalid_requests(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let cases: [(&str, &[(&str, &str)]); 5] = [
        (
            "no username",
            &[("grant_type", "password"), ("password", PASSWORD)],
        ),
        (
            "no password",
            &[("grant_type", "password"), ("username", "alice")],
        ),
        ("neither", &[("grant_type", "password")]),
        (
            "empty username",
            &[
                ("grant_type", "password"),
                ("username", ""),
                ("password", PASSWORD),
            ],
        ),
        (
            "empty password",
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", ""),
            ],
        ),
    ];
    for (what, form) in cases {
        let response = app.token(Some(&client), form).await;
        expect_error(response, 400, "invalid_request", what).await;
    }
    let response = app
        .token(Some(&client), &[("grant_type", "refresh_token")])
        .await;
    expect_error(response, 400, "invalid_request", "no refresh_token").await;
}

async fn narrower_scope_is_granted_exactly(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    for (requested, granted) in [
        ("read", "read"),
        ("write", "write"),
        ("write read", "write read"),
        ("read  read", "read"),
        ("", "read write"),
    ] {
        let mut form = password_form();
        form.push(("scope", requested));
        let body = ok_json(app.token(Some(&client), &form).await, requested).await;
        assert_eq!(body["scope"], granted, "requested {requested:?}");
        let access = body["access_token"].as_str().expect("access");
        let verified = app.verify(access, "tessera").await;
        assert_eq!(verified["scope"], granted, "claim for {requested:?}");
    }
    // A refresh keeps the family's scope unless narrowed again.
    let mut form = password_form();
    form.push(("scope", "read"));
    let body = ok_json(app.token(Some(&client), &form).await, "read").await;
    let refreshed = ok_json(
        app.refresh(&client, body["refresh_token"].as_str().expect("refresh"))
            .await,
        "refresh",
    )
    .await;
    assert_eq!(refreshed["scope"], "read");
}

async fn audiences_become_the_aud_claim(backend: Backend) {
    let app = spawn_app(backend).await;
    app.seed().await;
    let mut secrets = Vec::new();
    for (id, audiences) in [
        ("one-aud", vec!["https://api.example"]),
        ("two-aud", vec!["https://api.example", "billing"]),
    ] {
        let (_, secret) = app
            .admin
            .add_client(ClientSpec {
                client_id: id.into(),
                name: id.into(),
                grant_types: vec!["password".into()],
                scopes: vec!["read".into()],
                audiences: audiences.iter().map(|a| a.to_string()).collect(),
                ..ClientSpec::default()
            })
            .await
            .expect("client");
        secrets.push(Client {
            id: id.into(),
            secret: secret.expect("secret"),
        });
    }
    let one = ok_json(app.token(Some(&secrets[0]), &password_form()).await, "one").await;
    let token = one["access_token"].as_str().expect("access");
    assert_eq!(claims(token)["aud"], "https://api.example");
    app.verify(token, "https://api.example").await;
    let jwks = app.jwks().await;
    assert!(
        crate::helpers::verify_with_jwks(token, &jwks, "tessera").is_err(),
        "the default audience is not in a token for a client with its own"
    );

    let two = ok_json(app.token(Some(&secrets[1]), &password_form()).await, "two").await;
    let token = two["access_token"].as_str().expect("access");
    assert_eq!(
        claims(token)["aud"],
        json!(["https://api.example", "billing"])
    );
    app.verify(token, "billing").await;
    app.verify(token, "https://api.example").await;
}

async fn per_client_access_ttl_sets_expires_in_and_exp(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.seed().await;
    let (_, secret) = app
        .admin
        .add_client(ClientSpec {
            client_id: "short".into(),
            name: "short".into(),
            grant_types: vec!["password".into(), "refresh_token".into()],
            scopes: vec!["read".into()],
            access_ttl: Some(60),
            ..ClientSpec::default()
        })
        .await
        .expect("client");
    let short = Client {
        id: "short".into(),
        secret: secret.expect("secret"),
    };
    let body = ok_json(app.token(Some(&short), &password_form()).await, "short").await;
    assert_eq!(body["expires_in"], 60);
    let c = claims(body["access_token"].as_str().expect("access"));
    assert_eq!(
        c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat"),
        60
    );
    // The refresh grant uses it too.
    let refreshed = ok_json(
        app.refresh(&short, body["refresh_token"].as_str().expect("refresh"))
            .await,
        "refresh",
    )
    .await;
    assert_eq!(refreshed["expires_in"], 60);
    let c = claims(refreshed["access_token"].as_str().expect("access"));
    assert_eq!(
        c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat"),
        60
    );

    // Other clients keep the default.
    let body = app.login(&gateway).await;
    assert_eq!(body["expires_in"], 600);
    let c = claims(body["access_token"].as_str().expect("access"));
    assert_eq!(
        c["exp"].as_i64().expect("exp") - c["iat"].as_i64().expect("iat"),
        600
    );
    assert_eq!(c["aud"], "tessera");
}

both_backends!(
    missing_grant_type_is_invalid_request,
    unknown_grant_types_are_unsupported,
    grant_type_with_nul_is_a_malformed_request,
    repeated_parameters_are_invalid_requests,
    only_form_bodies_are_accepted,
    oversized_body_is_413,
    failed_client_authentication_is_401_with_a_basic_challenge,
    conflicting_client_credentials_are_invalid_requests,
    client_secret_post_authenticates,
    client_secret_basic_form_encodes_id_and_secret,
    a_uuid_shaped_client_id_gets_no_client_credentials_token,
    public_clients_authenticate_by_id_alone,
    unregistered_grant_is_unauthorized_client,
    scope_errors_are_invalid_scope,
    disabled_user_looks_like_a_wrong_password,
    missing_credentials_are_invalid_requests,
    narrower_scope_is_granted_exactly,
    audiences_become_the_aud_claim,
    per_client_access_ttl_sets_expires_in_and_exp,
);
