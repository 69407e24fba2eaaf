//! What shapes a successful answer or refuses a grant for what it asks: scope, audience,
//! lifetime, a disabled user.

use super::*;

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
    scope_errors_are_invalid_scope,
    disabled_user_looks_like_a_wrong_password,
    narrower_scope_is_granted_exactly,
    audiences_become_the_aud_claim,
    per_client_access_ttl_sets_expires_in_and_exp,
);
