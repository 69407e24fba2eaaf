//! Client changes made elsewhere (the CLI, another instance) reach a running server. On
//! Postgres the server keeps clients in memory and drops an entry when the change's NOTIFY
//! arrives, so a change lands within milliseconds rather than at once; a secret rotated a
//! moment ago works at once (a mismatch is checked against the database).

use std::time::{Duration, Instant};

use tessera::admin::ClientUpdate;

use crate::both_backends;
use crate::helpers::{Backend, Client, TestApp, spawn_app};

const CC: [(&str, &str); 1] = [("grant_type", "client_credentials")];

async fn status(app: &TestApp, client: &Client) -> (u16, String) {
    let r = app.token(Some(client), &CC).await;
    let status = r.status().as_u16();
    let body: serde_json::Value = r.json().await.expect("json");
    (status, body["error"].as_str().unwrap_or("").to_owned())
}

/// Polls until `want` holds, for at most 5 s; returns how long that took.
async fn takes_effect(
    app: &TestApp,
    client: &Client,
    want: impl Fn(&(u16, String)) -> bool,
    what: &str,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = status(app, client).await;
        if want(&got) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{what}: still {got:?} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn client_changes_reach_a_running_server(backend: Backend) {
    let app = spawn_app(backend).await;
    let svc = app
        .add_client("svc", &["client_credentials"], &["read"])
        .await;
    // Used a few times, so the server holds it.
    for _ in 0..3 {
        assert_eq!(status(&app, &svc).await.0, 200);
    }

    // A rotated secret works at once; the old one stops working.
    let (_, new_secret) = app.admin.rotate_client_secret("svc").await.expect("rotate");
    let rotated = Client {
        id: "svc".into(),
        secret: new_secret,
    };
    assert_eq!(
        status(&app, &rotated).await.0,
        200,
        "the new secret at once"
    );
    let old_dies = takes_effect(
        &app,
        &svc,
        |(s, e)| *s == 401 && e == "invalid_client",
        "old secret",
    )
    .await;

    // Taking a grant away.
    app.admin
        .update_client(
            "svc",
            ClientUpdate {
                grant_types: Some(vec!["password".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    let grant_goes = takes_effect(
        &app,
        &rotated,
        |(s, e)| *s == 400 && e == "unauthorized_client",
        "grant removed",
    )
    .await;

    // Deleting the client.
    app.admin.delete_client("svc").await.expect("delete");
    let deleted = takes_effect(
        &app,
        &rotated,
        |(s, e)| *s == 401 && e == "invalid_client",
        "client deleted",
    )
    .await;
    eprintln!(
        "{backend:?}: old secret refused after {old_dies:?}, grant removal after {grant_goes:?}, \
         deletion after {deleted:?}"
    );
}

both_backends!(client_changes_reach_a_running_server);
