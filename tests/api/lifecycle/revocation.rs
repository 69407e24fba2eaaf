//! Revocation (RFC 7009): refresh and access tokens, hints, other clients' tokens, garbage.

use super::*;

async fn revoking_a_refresh_token_ends_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let login = app.login(&client).await;
    let token = refresh_token_of(&login);
    assert_eq!(introspect(&app, &client, &token).await["active"], true);

    let response = revoke(
        &app,
        &client,
        &[("token", &token), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");

    let (status, body) = refresh_status(&app, &client, &token).await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    assert_eq!(introspect(&app, &client, &token).await, inactive());

    // Revoking again is fine (RFC 7009 §2.2: also for invalid tokens).
    assert_eq!(
        revoke(&app, &client, &[("token", &token)]).await.status(),
        200
    );

    let rows = app
        .admin
        .store
        .audit_query(&AuditFilter {
            action: Some("refresh.family_revoked".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].client_id.as_deref(), Some("gateway"));
}

async fn a_wrong_token_type_hint_does_not_stop_revocation(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let login = app.login(&client).await;
    let refresh = refresh_token_of(&login);
    let access = access_token_of(&login);

    // RFC 7009 §2.1: a wrong hint only means the server must look further.
    let response = revoke(
        &app,
        &client,
        &[("token", &refresh), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(introspect(&app, &client, &refresh).await, inactive());

    let response = revoke(
        &app,
        &client,
        &[("token", &access), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(introspect(&app, &client, &access).await, inactive());
}

async fn revoking_an_access_token_makes_it_inactive(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let login = app.login(&client).await;
    let access = access_token_of(&login);
    let other = access_token_of(&app.login(&client).await);
    let active = introspect(&app, &client, &access).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["jti"], claims(&access)["jti"]);

    let response = revoke(
        &app,
        &client,
        &[("token", &access), ("token_type_hint", "access_token")],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert_eq!(introspect(&app, &client, &access).await, inactive());
    // Only that token: another one of the same user and client stays active.
    assert_eq!(introspect(&app, &client, &other).await["active"], true);

    let rows = app
        .admin
        .store
        .audit_query(&AuditFilter {
            action: Some("access_token.revoked".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .expect("audit");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].target, claims(&access)["jti"].as_str().unwrap());
}

async fn revoking_another_clients_token_is_a_silent_no_op(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = seed_with_introspection(&app).await;
    let mobile = app
        .add_client("mobile", &["password", "refresh_token"], &["read"])
        .await;
    let login = app.login(&gateway).await;
    let refresh = refresh_token_of(&login);
    let access = access_token_of(&login);

    for token in [&refresh, &access] {
        let response = revoke(&app, &mobile, &[("token", token)]).await;
        assert_eq!(response.status(), 200, "no hint that the token exists");
        assert_eq!(introspect(&app, &gateway, token).await["active"], true);
    }
    let (status, _) = refresh_status(&app, &gateway, &refresh).await;
    assert_eq!(status, 200, "the owner's refresh token still works");
}

async fn revoking_unknown_or_garbage_tokens_answers_200(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let signed_elsewhere = {
        // A well-formed JWT whose signature no key of ours made.
        let login = app.login(&client).await;
        let access = access_token_of(&login);
        let mut parts: Vec<&str> = access.split('.').collect();
        parts[2] = "AAAA";
        parts.join(".")
    };
    for token in [
        "tsr_doesnotexist",
        "garbage",
        "a.b.c",
        signed_elsewhere.as_str(),
        &"x".repeat(1000),
    ] {
        let response = revoke(&app, &client, &[("token", token)]).await;
        assert_eq!(response.status(), 200, "token {token}");
    }

    // Still an authenticated, well-formed request.
    let response = revoke(&app, &client, &[("token_type_hint", "access_token")]).await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_request");
    let response = app
        .post_form("/oauth/revoke", None, &[("token", "garbage")])
        .await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
}

// ---------------------------------------------------------------------------------------------
// Introspection (RFC 7662)

both_backends!(
    revoking_a_refresh_token_ends_it,
    a_wrong_token_type_hint_does_not_stop_revocation,
    revoking_an_access_token_makes_it_inactive,
    revoking_another_clients_token_is_a_silent_no_op,
    revoking_unknown_or_garbage_tokens_answers_200,
);
