//! Introspection (RFC 7662): who may ask, what it says of access and refresh tokens, under
//! concurrency, and until expiry.

use super::*;

async fn introspection_needs_an_authenticated_permitted_client(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = app.seed().await;
    let access = access_token_of(&app.login(&gateway).await);

    // Authenticated, but not allowed to introspect.
    let response = app
        .post_form("/oauth/introspect", Some(&gateway), &[("token", &access)])
        .await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "unauthorized_client");

    // No credentials at all, and wrong ones.
    let response = app
        .post_form("/oauth/introspect", None, &[("token", &access)])
        .await;
    assert_eq!(response.status(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
    let wrong = Client {
        id: "gateway".into(),
        secret: "tsc_wrong".into(),
    };
    let response = app
        .post_form("/oauth/introspect", Some(&wrong), &[("token", &access)])
        .await;
    assert_eq!(response.status(), 401);

    // A resource server registered for it may introspect anyone's tokens.
    let rs = app
        .add_client("resource-server", &["client_credentials"], &["introspect"])
        .await;
    app.admin
        .update_client(
            "resource-server",
            ClientUpdate {
                introspect: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    let answer = introspect(&app, &rs, &access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["client_id"], "gateway");

    // client_secret_post works as well as Basic.
    let response = app
        .post_form(
            "/oauth/introspect",
            None,
            &[
                ("token", &access),
                ("client_id", &rs.id),
                ("client_secret", &rs.secret),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
}

async fn introspection_describes_access_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let access = access_token_of(&app.login(&client).await);
    let token_claims = claims(&access);
    let user = app.admin.user("alice").await.expect("user");

    let answer = introspect(&app, &client, &access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["scope"], "read write");
    assert_eq!(answer["client_id"], "gateway");
    assert_eq!(answer["username"], "alice");
    assert_eq!(answer["sub"], user.id.as_str());
    assert_eq!(answer["iss"], crate::helpers::ISSUER);
    assert_eq!(answer["aud"], "tessera");
    assert_eq!(answer["exp"], token_claims["exp"]);
    assert_eq!(answer["iat"], token_claims["iat"]);
    assert_eq!(answer["jti"], token_claims["jti"]);

    for token in ["garbage", "tsr_unknown", "a.b.c"] {
        assert_eq!(
            introspect(&app, &client, token).await,
            inactive(),
            "{token}"
        );
    }
}

/// Concurrent introspections share database queries on Postgres (and skip the signature check
/// for tokens seen before): each caller must still get the answer about its own token, and a
/// revocation or a disabled user must show at once, also for tokens introspected before.
async fn concurrent_introspections_each_get_their_own_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let gateway = seed_with_introspection(&app).await;
    app.admin
        .add_user("bob", crate::helpers::PASSWORD, &["admin".into()], false)
        .await
        .expect("bob");
    let service = app
        .add_client("service", &["client_credentials"], &["read"])
        .await;
    // (token, still active at the end)
    let mut tokens: Vec<(String, bool)> = Vec::new();
    for user in ["alice", "bob"] {
        for _ in 0..2 {
            let response = app
                .password_grant(&gateway, user, crate::helpers::PASSWORD)
                .await;
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.expect("json");
            tokens.push((access_token_of(&body), user == "alice"));
        }
    }
    for i in 0..16 {
        let response = app
            .token(Some(&service), &[("grant_type", "client_credentials")])
            .await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.expect("json");
        tokens.push((access_token_of(&body), i % 2 == 0));
    }

    let round = |expect_changes: bool| {
        let app = &app;
        let gateway = &gateway;
        let tokens = &tokens;
        async move {
            let asks =
                tokens
                    .iter()
                    .cycle()
                    .take(tokens.len() * 4)
                    .map(|(token, stays)| async move {
                        let answer = introspect(app, gateway, token).await;
                        let active = !expect_changes || *stays;
                        assert_eq!(answer["active"], active, "{answer}");
                        if active {
                            assert_eq!(
                                answer["jti"],
                                claims(token)["jti"],
                                "someone else's answer"
                            );
                        }
                    });
            join_all(asks).await;
        }
    };
    round(false).await;

    app.admin.set_disabled("bob", true).await.expect("disable");
    for (token, stays) in &tokens[4..] {
        if !stays {
            let response = revoke(&app, &service, &[("token", token)]).await;
            assert_eq!(response.status(), 200);
        }
    }
    round(true).await;
}

async fn introspection_of_refresh_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let r0 = refresh_token_of(&app.login(&client).await);
    let user = app.admin.user("alice").await.expect("user");

    let answer = introspect(&app, &client, &r0).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["token_type"], "refresh_token");
    assert_eq!(answer["client_id"], "gateway");
    assert_eq!(answer["username"], "alice");
    assert_eq!(answer["sub"], user.id.as_str());
    assert_eq!(answer["scope"], "read write");
    assert!(answer["exp"].as_i64().expect("exp") > app.clock.now());

    let (status, body) = refresh_status(&app, &client, &r0).await;
    assert_eq!(status, 200);
    let r1 = refresh_token_of(&body);
    assert_eq!(introspect(&app, &client, &r0).await, inactive(), "rotated");
    assert_eq!(introspect(&app, &client, &r1).await["active"], true);
    // Introspection is not use: it neither rotates nor counts as reuse.
    let (status, _) = refresh_status(&app, &client, &r1).await;
    assert_eq!(status, 200);

    // A refresh token past its idle lifetime is inactive too.
    let r2 = refresh_token_of(&app.login(&client).await);
    app.clock
        .advance(app.settings.tokens.refresh_idle_ttl.as_secs() as i64 + 1);
    assert_eq!(introspect(&app, &client, &r2).await, inactive(), "idle");
}

async fn an_access_token_is_active_until_it_expires(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = seed_with_introspection(&app).await;
    let access = access_token_of(&app.login(&client).await);
    let exp = claims(&access)["exp"].as_i64().expect("exp");
    let ttl = app.settings.tokens.access_ttl.as_secs() as i64;

    app.clock.advance(ttl - 10);
    assert!(app.clock.now() < exp);
    assert_eq!(introspect(&app, &client, &access).await["active"], true);
    let verified = app.verify(&access, "tessera").await;
    assert!(verified["exp"].as_i64().expect("exp") > app.clock.now());

    app.clock.advance(11);
    assert!(app.clock.now() >= exp);
    assert_eq!(introspect(&app, &client, &access).await, inactive());
    // And revoking an expired token is still a quiet 200.
    assert_eq!(
        revoke(&app, &client, &[("token", &access)]).await.status(),
        200
    );
}

// ---------------------------------------------------------------------------------------------
// Signing keys and the JWKS

both_backends!(
    introspection_needs_an_authenticated_permitted_client,
    introspection_describes_access_tokens,
    concurrent_introspections_each_get_their_own_answer,
    introspection_of_refresh_tokens,
    an_access_token_is_active_until_it_expires,
);
