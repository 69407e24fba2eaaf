//! `GET /.well-known/jwks.json` (RFC 7517) and `GET /.well-known/oauth-authorization-server`
//! (RFC 8414). Both bodies are built once, not per request.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use super::AppState;
use crate::oauth::GRANT_TYPES;

pub async fn jwks(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let keys = &state.oauth.keys;
    let jwks = keys.jwks();
    let cache = format!("public, max-age={}", keys.jwks_max_age());
    let not_modified = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == jwks.etag || tag.trim() == "*")
        });
    let mut response = if not_modified {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, jwks.etag.clone()));
    if not_modified {
        return response.finish();
    }
    response
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .body(actix_web::web::Bytes::copy_from_slice(&jwks.body))
}

pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let body = match state.metadata.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ))
        .body(actix_web::web::Bytes::copy_from_slice(&body))
}

/// RFC 8414 §2 metadata, every URL built from the issuer.
pub fn metadata_document(issuer: &str, scopes: &[String], algorithm: &str) -> Arc<[u8]> {
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    let doc = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "grant_types_supported": GRANT_TYPES,
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": scopes,
        "token_endpoint_auth_signing_alg_values_supported": [],
        "access_token_signing_alg_values_supported": [algorithm],
    });
    Arc::from(doc.to_string().into_bytes())
}
