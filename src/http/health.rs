//! Liveness and readiness probes.

use actix_web::{HttpResponse, web};
use serde::Serialize;

use super::AppState;
use crate::oauth::NotReady;

/// A probe's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Probe {
    pub status: ProbeStatus,
    /// Why the server is not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<&'static str>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProbeStatus {
    /// `/healthz`: the process serves requests.
    Ok,
    /// `/readyz`: the database answers and a key signs.
    Ready,
    /// `/readyz`: not ready; `reason` says why.
    Unavailable,
}

fn probe(status: ProbeStatus, reason: Option<&'static str>) -> Probe {
    Probe { status, reason }
}

/// Liveness: 200 while the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "Alive: `{\"status\": \"ok\"}`.", body = Probe)),
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(probe(ProbeStatus::Ok, None))
}

/// Readiness: 200 when the database answers and a key signs; 503 with the reason otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: `{\"status\": \"ready\"}`.", body = Probe),
        (status = 503, description = "Not ready: `{\"status\": \"unavailable\", \"reason\": …}`.",
            body = Probe),
    ),
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.oauth.readiness().await {
        Ok(()) => HttpResponse::Ok().json(probe(ProbeStatus::Ready, None)),
        Err(not_ready) => {
            if let NotReady::Database(err) = &not_ready {
                tracing::warn!(error = %err, "readiness: database check failed");
            }
            HttpResponse::ServiceUnavailable()
                .json(probe(ProbeStatus::Unavailable, Some(not_ready.reason())))
        }
    }
}
