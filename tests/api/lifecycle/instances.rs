//! Several instances on one Postgres database.

use super::*;

/// Logs alice in at an instance by address.
async fn login_at(http: &reqwest::Client, address: &str, client: &Client) -> Value {
    let response = http
        .post(format!("{address}/oauth/token"))
        .header("Authorization", basic(&client.id, &client.secret))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", crate::helpers::PASSWORD),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_starting_together_create_one_signing_key() {
    for _round in 0..3 {
        let db = TestDb::new(Backend::Postgres).await;
        let settings = test_settings(&db);
        let clock = ShiftedClock::new();
        let (a, b) = tokio::join!(
            tokio::spawn(Application::build(settings.clone(), clock.clone())),
            tokio::spawn(Application::build(settings.clone(), clock.clone())),
        );
        let a = a.expect("join").expect("instance a builds");
        let b = b.expect("join").expect("instance b builds");
        let (port_a, port_b) = (a.port(), b.port());
        let metrics_port = a.metrics_port();
        let (handle_a, handle_b) = (a.handle(), b.handle());
        tokio::spawn(a.run_until_stopped());
        tokio::spawn(b.run_until_stopped());

        let store = open_store(&settings).await.expect("store");
        let keys = store.list_keys().await.expect("keys");
        assert_eq!(keys.len(), 1, "exactly one signing key: {keys:?}");

        let admin =
            Admin::new(store, clock.clone(), settings.clone(), "cli:test".into()).expect("admin");
        let app = TestApp {
            address: format!("http://127.0.0.1:{port_a}"),
            port: port_a,
            metrics_port,
            db,
            clock,
            http: reqwest::Client::new(),
            admin,
            settings,
            handle: handle_a,
        };
        let client = app.seed().await;
        let from_a = access_token_of(&app.login(&client).await);
        let from_b = access_token_of(
            &login_at(&app.http, &format!("http://127.0.0.1:{port_b}"), &client).await,
        );
        assert_eq!(kid_of(&from_a), keys[0].kid);
        assert_eq!(kid_of(&from_b), keys[0].kid);
        // Each instance's token verifies against the other's JWKS.
        let jwks_b: Value = app
            .http
            .get(format!("http://127.0.0.1:{port_b}/.well-known/jwks.json"))
            .send()
            .await
            .expect("jwks")
            .json()
            .await
            .expect("json");
        verify_with_jwks(&from_a, &jwks_b, "tessera").expect("a's token at b");
        app.verify(&from_b, "tessera").await;
        handle_b.stop(false).await;
        app.handle.stop(false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_from_two_rings_never_make_two_active_keys() {
    let app = spawn_app(Backend::Postgres).await;
    let ring_a = side_ring(&app).await;
    let ring_b = side_ring(&app).await;
    let store = app.admin.store.clone();
    let before = store.list_keys().await.expect("keys");
    assert_eq!(before.len(), 1);

    let calls = (0..10).map(|i| {
        let ring = if i % 2 == 0 {
            ring_a.clone()
        } else {
            ring_b.clone()
        };
        tokio::spawn(async move { ring.rotate(false, "test").await })
    });
    let results: Vec<Result<String, KeyError>> = join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("join"))
        .collect();
    let winners: Vec<String> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    for result in &results {
        if let Err(e) = result {
            assert!(
                matches!(e, KeyError::Store(StoreError::Conflict(_))),
                "a lost race is a conflict, not {e}"
            );
        }
    }
    assert!(!winners.is_empty(), "someone wins");

    let after = store.list_keys().await.expect("keys");
    assert_eq!(
        after.len(),
        before.len() + winners.len(),
        "one generation per winning call: {after:?}"
    );
    let generations: Vec<i64> = after.iter().map(|k| k.generation).collect();
    let expected: Vec<i64> = (1..=after.len() as i64).collect();
    assert_eq!(generations, expected);
    for kid in &winners {
        assert!(after.iter().any(|k| &k.kid == kid), "{kid} stored");
    }
    let now = app.clock.now();
    for at in [now, now + 30, now + 3600, now + 61, now + 86_400] {
        let active = describe(&after, at, 600)
            .into_iter()
            .filter(|k| k.state == KeyState::Active)
            .count();
        assert_eq!(active, 1, "exactly one active key at {at}");
    }

    // The server keeps signing, with a key its JWKS publishes.
    let client = app.seed().await;
    let token = access_token_of(&app.login(&client).await);
    app.verify(&token, "tessera").await;
}
