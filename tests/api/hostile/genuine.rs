//! Genuine tokens at the introspection endpoint: every RFC 7662 §2.2 member, revocation by
//! their owner alone, and expiry.

use serde_json::{Value, json};

use super::{INTROSPECT, REVOKE, setup};
use crate::helpers::{Backend, Client, ISSUER, claims, spawn_app};
use crate::lifecycle::introspect;

pub(super) async fn genuine_tokens_introspect_with_every_member(backend: Backend) {
    let app = spawn_app(backend).await;
    let (gateway, other, inspector) = setup(&app).await;
    let session = app.login(&gateway).await;
    let access = session["access_token"].as_str().expect("access");
    let refresh = session["refresh_token"].as_str().expect("refresh");
    let alice = app.admin.user("alice").await.expect("alice");
    let issued = claims(access);

    let answer = introspect(&app, &inspector, access).await;
    let expected = json!({
        "active": true,
        "scope": "read write",
        "client_id": "gateway",
        "username": "alice",
        "token_type": "Bearer",
        "exp": issued["exp"],
        "iat": issued["iat"],
        "nbf": issued["nbf"],
        "sub": alice.id,
        "aud": "tessera",
        "iss": ISSUER,
        "jti": issued["jti"],
    });
    assert_eq!(answer, expected);
    assert_eq!(
        answer["exp"].as_i64().expect("exp") - answer["iat"].as_i64().expect("iat"),
        600
    );

    // client_secret_post works at the introspection endpoint too.
    let response = app
        .post_form(
            INTROSPECT,
            None,
            &[
                ("token", access),
                ("client_id", &inspector.id),
                ("client_secret", &inspector.secret),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("json"), expected);

    let answer = introspect(&app, &inspector, refresh).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "refresh_token");
    assert_eq!(answer["scope"], "read write");
    assert_eq!(answer["client_id"], "gateway");
    assert_eq!(answer["username"], "alice");
    assert_eq!(answer["sub"], alice.id.as_str());
    assert_eq!(answer["iss"], ISSUER);
    assert!(answer["exp"].as_i64().expect("exp") > answer["iat"].as_i64().expect("iat"));

    // A client cannot revoke another client's tokens; the owner can.
    let revoke = |client: Client, token: String| {
        let app = &app;
        async move {
            let response = app
                .post_form(REVOKE, Some(&client), &[("token", &token)])
                .await;
            assert_eq!(response.status(), 200);
        }
    };
    revoke(other.clone(), access.to_owned()).await;
    revoke(other.clone(), refresh.to_owned()).await;
    assert_eq!(introspect(&app, &inspector, access).await["active"], true);
    assert_eq!(introspect(&app, &inspector, refresh).await["active"], true);
    revoke(gateway.clone(), access.to_owned()).await;
    assert_eq!(
        introspect(&app, &inspector, access).await,
        json!({"active": false})
    );
    revoke(gateway.clone(), refresh.to_owned()).await;
    assert_eq!(
        introspect(&app, &inspector, refresh).await,
        json!({"active": false})
    );

    // Our own token, once expired, is inactive too.
    let fresh = app.login(&gateway).await;
    let fresh_access = fresh["access_token"].as_str().expect("access");
    assert_eq!(
        introspect(&app, &inspector, fresh_access).await["active"],
        true
    );
    app.clock.advance(601);
    assert_eq!(
        introspect(&app, &inspector, fresh_access).await,
        json!({"active": false})
    );
}
