//! The HTTP front door: the route table, thin handlers, and the error mapping.

mod browser;
pub mod client_auth;
pub mod error;
mod error_responses;
pub mod form;
mod health;
mod metrics_endpoint;
mod oauth_endpoints;
pub mod observe;
pub mod openapi;
mod schemas;
mod well_known;

use std::sync::{Arc, RwLock};

use actix_web::web;

use crate::oauth::OAuth;

/// What every handler can reach.
pub struct AppState {
    pub oauth: OAuth,
    /// RFC 8414 metadata, serialized again only when the scopes in use change.
    pub metadata: Arc<RwLock<Arc<[u8]>>>,
    pub max_body_bytes: usize,
    /// Renders the Prometheus exposition; `None` when metrics are off or served elsewhere.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// What Tessera's own pages share: product name, logo, cookie names.
    pub site: Arc<browser::Site>,
}

pub use browser::Site;

/// Every route Tessera serves.
pub const ROUTES: [(&str, &str); 20] = [
    ("GET", "/oauth/authorize"),
    ("POST", "/oauth/authorize"),
    ("POST", "/oauth/authorize/login"),
    ("POST", "/oauth/authorize/consent"),
    ("GET", "/oauth/logout"),
    ("POST", "/oauth/logout"),
    ("POST", "/oauth/logout/confirm"),
    ("GET", "/userinfo"),
    ("POST", "/userinfo"),
    ("GET", "/.well-known/openid-configuration"),
    ("POST", "/oauth/token"),
    ("POST", "/oauth/revoke"),
    ("POST", "/oauth/introspect"),
    ("GET", "/.well-known/jwks.json"),
    ("GET", "/.well-known/oauth-authorization-server"),
    ("GET", "/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/assets/tessera.css"),
];

/// The one route table.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/oauth/authorize")
            .route(web::get().to(browser::authorize_get))
            .route(web::post().to(browser::authorize_post)),
    )
    .service(web::resource("/oauth/authorize/login").route(web::post().to(browser::login)))
    .service(web::resource("/oauth/authorize/consent").route(web::post().to(browser::consent)))
    .service(
        web::resource("/oauth/logout")
            .route(web::get().to(browser::logout))
            .route(web::post().to(browser::logout)),
    )
    .service(web::resource("/oauth/logout/confirm").route(web::post().to(browser::logout_confirm)))
    .service(
        web::resource("/userinfo")
            .route(web::get().to(browser::userinfo))
            .route(web::post().to(browser::userinfo)),
    )
    .service(
        web::resource("/.well-known/openid-configuration")
            .route(web::get().to(well_known::openid_configuration)),
    )
    .service(web::resource("/assets/tessera.css").route(web::get().to(browser::stylesheet)))
    .service(web::resource("/oauth/token").route(web::post().to(oauth_endpoints::token)))
    .service(web::resource("/oauth/revoke").route(web::post().to(oauth_endpoints::revoke)))
    .service(web::resource("/oauth/introspect").route(web::post().to(oauth_endpoints::introspect)))
    .service(web::resource("/.well-known/jwks.json").route(web::get().to(well_known::jwks)))
    .service(
        web::resource("/.well-known/oauth-authorization-server")
            .route(web::get().to(well_known::metadata)),
    )
    .service(web::resource("/openapi.json").route(web::get().to(openapi::openapi_json)))
    .service(web::resource("/healthz").route(web::get().to(health::healthz)))
    .service(web::resource("/readyz").route(web::get().to(health::readyz)))
    .service(web::resource("/metrics").route(web::get().to(metrics_endpoint::metrics)));
}

pub use well_known::metadata_document;

/// The routes of the separate metrics listener (`metrics.bind`).
pub fn metrics_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/metrics").route(web::get().to(metrics_endpoint::metrics)));
}
