//! Liveness and readiness probes.

use actix_web::{HttpResponse, web};
use serde_json::json;

use super::AppState;

/// 200 while the process serves requests.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// 200 when the database answers and a key signs; 503 with the reason otherwise.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let oauth = &state.oauth;
    if let Err(err) = oauth.store.ping().await {
        tracing::warn!(error = %err, "readiness: database check failed");
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "reason": "database unreachable" }));
    }
    if oauth.keys.active_signer(oauth.clock.now()).is_none() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({ "status": "unavailable", "reason": "no active signing key" }));
    }
    HttpResponse::Ok().json(json!({ "status": "ready" }))
}
