//! Liveness, readiness, and readiness failing when the database goes away.

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

async fn healthz_and_readyz_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "ready");
}

async fn unknown_routes_and_methods_are_rejected(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = app.get("/nope").await;
    assert_eq!(missing.status(), 404);
    let wrong_method = app.get("/oauth/token").await;
    assert_eq!(wrong_method.status(), 405);
}

both_backends!(
    healthz_and_readyz_answer,
    unknown_routes_and_methods_are_rejected
);

/// Dropping the database under a running server: /readyz turns 503 with a reason, /healthz
/// and the JWKS keep answering from memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_readyz_is_503_when_the_database_is_unreachable() {
    let app = spawn_app(Backend::Postgres).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.db.drop_database().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["status"], "unavailable");
    assert_eq!(body["reason"], "database unreachable");
    assert_eq!(app.get("/healthz").await.status(), 200);
    let jwks = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks.status(), 200);
}
