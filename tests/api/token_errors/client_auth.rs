//! Client authentication in each of its forms (RFC 6749 §2.3.1), and which client may use
//! which grant.

use super::*;

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

both_backends!(
    failed_client_authentication_is_401_with_a_basic_challenge,
    conflicting_client_credentials_are_invalid_requests,
    client_secret_post_authenticates,
    client_secret_basic_form_encodes_id_and_secret,
    a_uuid_shaped_client_id_gets_no_client_credentials_token,
    public_clients_authenticate_by_id_alone,
    unregistered_grant_is_unauthorized_client,
);
