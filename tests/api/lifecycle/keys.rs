//! Signing-key rotation seen through the JWKS.

use super::*;

async fn key_rotation_full_cycle(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.keys.publish_ahead = Duration::from_secs(60);
        s.keys.jwks_max_age = Duration::from_secs(30);
        s.keys.reload_interval = Duration::from_millis(200);
    })
    .await;
    let client = seed_with_introspection(&app).await;
    let ttl = app.settings.tokens.access_ttl.as_secs() as i64;

    // One key, served with caching headers and a validator.
    let response = jwks_response(&app, None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=30");
    let etag1 = etag_of(&response);
    let jwks1: Value = response.json().await.expect("json");
    let old_kid = kids(&jwks1).pop().expect("a key");
    assert_eq!(kids(&jwks1).len(), 1);
    let response = jwks_response(&app, Some(&etag1)).await;
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["cache-control"], "public, max-age=30");
    assert_eq!(etag_of(&response), etag1);
    assert!(response.bytes().await.expect("body").is_empty());

    let t0 = access_token_of(&app.login(&client).await);
    assert_eq!(kid_of(&t0), old_kid);

    // Rotate: the new key is published at once but does not sign yet.
    let ring = side_ring(&app).await;
    let new_kid = ring.rotate(false, "test").await.expect("rotate");
    assert_ne!(new_kid, old_kid);
    let jwks2 = wait_for_jwks(&app, "the new key", |k| k.contains(&new_kid)).await;
    assert!(kids(&jwks2).contains(&old_kid));
    let response = jwks_response(&app, Some(&etag1)).await;
    assert_eq!(response.status(), 200, "the old ETag no longer matches");
    let etag2 = etag_of(&response);
    assert_ne!(etag2, etag1);
    assert_eq!(jwks_response(&app, Some(&etag2)).await.status(), 304);

    // Just before activation the old key still signs.
    app.clock.advance(55);
    let t1 = access_token_of(&app.login(&client).await);
    assert_eq!(kid_of(&t1), old_kid, "a pending key does not sign");
    let t1_exp = claims(&t1)["exp"].as_i64().expect("exp");

    // Past publish_ahead the new key signs.
    app.clock.advance(6);
    let t2 = access_token_of(&app.login(&client).await);
    assert_eq!(
        kid_of(&t2),
        new_kid,
        "the new key signs after publish_ahead"
    );
    app.verify(&t2, "tessera").await;

    // Tokens signed by the old key still verify, from the JWKS, until their expiry.
    app.clock.advance(ttl - 60);
    assert!(app.clock.now() < t1_exp);
    let jwks = app.jwks().await;
    assert!(kids(&jwks).contains(&old_kid), "old key still published");
    let verified = verify_with_jwks(&t1, &jwks, "tessera").expect("old token verifies");
    assert!(verified["exp"].as_i64().expect("exp") > app.clock.now());
    assert_eq!(introspect(&app, &client, &t1).await["active"], true);
    assert_eq!(
        introspect(&app, &client, &t0).await,
        inactive(),
        "t0 has expired"
    );

    // Once every token it signed has expired, the old key leaves the JWKS.
    app.clock.advance(60);
    assert!(app.clock.now() >= t1_exp);
    assert_eq!(introspect(&app, &client, &t1).await, inactive());
    let jwks3 = wait_for_jwks(&app, "the old key gone", |k| !k.contains(&old_kid)).await;
    assert_eq!(kids(&jwks3), vec![new_kid.clone()]);
    let response = jwks_response(&app, Some(&etag2)).await;
    assert_eq!(response.status(), 200);
    assert_ne!(etag_of(&response), etag2);
    app.verify(&t2, "tessera").await;

    // The side ring sees the same states the server acts on.
    ring.reload().await.expect("reload");
    let states: Vec<(String, KeyState)> = ring
        .describe()
        .into_iter()
        .map(|k| (k.kid, k.state))
        .collect();
    assert_eq!(
        states,
        vec![(old_kid, KeyState::Expired), (new_kid, KeyState::Active)]
    );
}

// ---------------------------------------------------------------------------------------------
// Clean-up

both_backends!(key_rotation_full_cycle,);
