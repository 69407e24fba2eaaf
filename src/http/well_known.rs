//! `GET /.well-known/jwks.json` (RFC 7517) and `GET /.well-known/oauth-authorization-server`
//! (RFC 8414). Both bodies are built once, not per request.

use std::sync::Arc;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::AppState;
use crate::oauth::GRANT_TYPES;

/// The public signing keys (RFC 7517)
///
/// Every key that signs now, will sign soon, or signed a token that has not expired yet. Pick
/// the key by the token's `kid`, and take the algorithm from the key, never from the token.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "discovery",
    params(
        ("If-None-Match" = Option<String>, Header, nullable = false,
            description = "An `ETag` from an earlier answer, or `*`: 304 when still current."),
    ),
    responses(
        (status = 200, description = "The JSON Web Key Set.",
            body = super::schemas::JwkSet, content_type = "application/json",
            headers(
                ("Cache-Control" = String, description = "`public, max-age=N`, N from \
                    `keys.jwks_max_age`."),
                ("ETag" = String, description = "A strong validator of the key set."),
            )),
        (status = 304, description = "The key set is unchanged since the given `ETag`.",
            headers(
                ("Cache-Control" = String, description = "`public, max-age=N`."),
                ("ETag" = String, description = "The current validator."),
            )),
    )
)]
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

/// Authorization server metadata (RFC 8414)
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    tag = "discovery",
    responses(
        (status = 200, description = "The metadata; every URL is built from `server.issuer`.",
            body = Metadata, content_type = "application/json",
            headers(("Cache-Control" = String, description = "`public, max-age=3600`"))),
    )
)]
pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let body = match state.metadata.read() {
        Ok(guard) => guard.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    };
    static_json(actix_web::web::Bytes::copy_from_slice(&body))
}

/// OpenID Provider metadata (OpenID Connect Discovery 1.0 §4)
///
/// The same document as `/.well-known/oauth-authorization-server`.
#[utoipa::path(
    get,
    path = "/.well-known/openid-configuration",
    tag = "discovery",
    responses(
        (status = 200, description = "The metadata; every URL is built from `server.issuer`.",
            body = Metadata, content_type = "application/json",
            headers(("Cache-Control" = String, description = "`public, max-age=3600`"))),
    )
)]
pub async fn openid_configuration(state: web::Data<AppState>) -> HttpResponse {
    metadata(state).await
}

/// Authorization server metadata (RFC 8414 §2), which is also the OpenID Provider metadata
/// (OpenID Connect Discovery §3): one document, served at both addresses.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: String,
    end_session_endpoint: String,
    jwks_uri: String,
    revocation_endpoint: String,
    introspection_endpoint: String,
    grant_types_supported: Vec<&'static str>,
    response_types_supported: Vec<&'static str>,
    response_modes_supported: Vec<&'static str>,
    /// PKCE (RFC 7636) is required of every client, with S256 only.
    code_challenge_methods_supported: Vec<&'static str>,
    /// RFC 9207: every authorization response carries `iss`.
    authorization_response_iss_parameter_supported: bool,
    subject_types_supported: Vec<&'static str>,
    id_token_signing_alg_values_supported: Vec<String>,
    claims_supported: Vec<&'static str>,
    prompt_values_supported: Vec<&'static str>,
    request_parameter_supported: bool,
    request_uri_parameter_supported: bool,
    claims_parameter_supported: bool,
    token_endpoint_auth_methods_supported: Vec<&'static str>,
    revocation_endpoint_auth_methods_supported: Vec<&'static str>,
    introspection_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Every scope some client may request.
    scopes_supported: Vec<String>,
    /// Empty: no client authenticates with a signed JWT.
    token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    access_token_signing_alg_values_supported: Vec<String>,
}

/// RFC 8414 §2 metadata, every URL built from the issuer.
pub fn metadata_document(issuer: &str, scopes: &[String], algorithm: &str) -> Arc<[u8]> {
    let auth_methods = vec!["client_secret_basic", "client_secret_post", "none"];
    let doc = Metadata {
        issuer: issuer.to_owned(),
        authorization_endpoint: format!("{issuer}/oauth/authorize"),
        token_endpoint: format!("{issuer}/oauth/token"),
        userinfo_endpoint: format!("{issuer}/userinfo"),
        end_session_endpoint: format!("{issuer}/oauth/logout"),
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        revocation_endpoint: format!("{issuer}/oauth/revoke"),
        introspection_endpoint: format!("{issuer}/oauth/introspect"),
        grant_types_supported: GRANT_TYPES.to_vec(),
        response_types_supported: vec!["code"],
        response_modes_supported: vec!["query"],
        code_challenge_methods_supported: vec!["S256"],
        authorization_response_iss_parameter_supported: true,
        subject_types_supported: vec!["public"],
        id_token_signing_alg_values_supported: vec![algorithm.to_owned()],
        claims_supported: vec![
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "sid",
            "at_hash",
            "amr",
            "azp",
            "preferred_username",
            "name",
            "email",
            "email_verified",
        ],
        prompt_values_supported: vec!["none", "login", "consent", "select_account"],
        request_parameter_supported: false,
        request_uri_parameter_supported: false,
        claims_parameter_supported: false,
        token_endpoint_auth_methods_supported: auth_methods.clone(),
        revocation_endpoint_auth_methods_supported: auth_methods,
        introspection_endpoint_auth_methods_supported: vec![
            "client_secret_basic",
            "client_secret_post",
        ],
        scopes_supported: with_oidc_scopes(scopes),
        token_endpoint_auth_signing_alg_values_supported: Vec::new(),
        access_token_signing_alg_values_supported: vec![algorithm.to_owned()],
    };
    let body = serde_json::to_vec(&doc).expect("metadata serializes");
    Arc::from(body)
}

/// The scopes clients may ask for, and those OpenID Connect gives a meaning of its own,
/// sorted.
fn with_oidc_scopes(scopes: &[String]) -> Vec<String> {
    let mut all: Vec<String> = scopes.to_vec();
    for oidc in ["openid", "profile", "email", "offline_access"] {
        if !all.iter().any(|s| s == oidc) {
            all.push(oidc.to_owned());
        }
    }
    all.sort();
    all
}

/// A JSON document that changes rarely: cacheable for an hour.
pub fn static_json(body: impl actix_web::body::MessageBody + 'static) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        ))
        .body(body)
}
