//! `GET /metrics`: Prometheus text exposition.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};

use super::AppState;

/// Prometheus metrics
///
/// Requests by route and status, latency histograms, tokens issued by grant, login failures,
/// refresh-token reuse detections, database pool use.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text exposition format 0.0.4.",
            body = String, content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 404, description = "Served on a listener of its own (metrics.bind, the default), or no metrics recorder could be installed in this process."),
    )
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let Some(handle) = &state.metrics else {
        return HttpResponse::NotFound().finish();
    };
    let (size, idle) = state.oauth.pool_stats();
    let idle = u32::try_from(idle).unwrap_or(u32::MAX);
    metrics::gauge!("tessera_db_pool_connections", "state" => "in_use")
        .set(f64::from(size.saturating_sub(idle)));
    metrics::gauge!("tessera_db_pool_connections", "state" => "idle").set(f64::from(idle));
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        ))
        .body(handle.render())
}
