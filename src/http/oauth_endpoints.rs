//! `POST /oauth/token` (RFC 6749 §3.2), `/oauth/revoke` (RFC 7009), `/oauth/introspect`
//! (RFC 7662): read the form, find the client's credentials, hand over to the domain.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::error::ApiError;
use super::{AppState, client_auth, form};

/// What every OAuth endpoint starts with: the strict form and the client's credentials, the
/// client id recorded on the handler's span.
async fn read_request(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<(crate::oauth::Params, crate::oauth::ClientAuth), ApiError> {
    let params = form::read(req, payload, state.max_body_bytes).await?;
    let auth = client_auth::extract(req, &params)?;
    tracing::Span::current().record("client_id", auth.client_id().unwrap_or(""));
    Ok((params, auth))
}

fn no_store(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Token endpoint (RFC 6749 §3.2)
///
/// Trades a user's password (§4.3), a refresh token (§6) or the client's own credentials (§4.4)
/// for a signed JWT access token (RFC 9068) and, for users, a rotated refresh token.
#[utoipa::path(
    post,
    path = "/oauth/token",
    tag = "oauth",
    request_body(
        content = super::schemas::TokenRequest,
        content_type = "application/x-www-form-urlencoded",
    ),
    security((), ("client_secret_basic" = [])),
    responses(
        (status = 200, description = "The token response (RFC 6749 §5.1).",
            body = crate::oauth::TokenResponse, content_type = "application/json",
            headers(
                ("Cache-Control" = String, description = "`no-store`"),
                ("Pragma" = String, description = "`no-cache`"),
            )),
        (status = 400, response = super::error_responses::BadRequest),
        (status = 401, response = super::error_responses::Unauthorized),
        (status = 413, response = super::error_responses::PayloadTooLarge),
        (status = 500, response = super::error_responses::ServerError),
        (status = 503, response = super::error_responses::Unavailable),
    )
)]
#[tracing::instrument(skip_all, fields(grant_type, client_id))]
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (params, auth) = read_request(&req, payload, &state).await?;
    tracing::Span::current().record("grant_type", params.get("grant_type").unwrap_or(""));
    let response = state.oauth.token(&params, &auth).await?;
    Ok(no_store(HttpResponse::Ok().json(response)))
}

/// Token revocation (RFC 7009)
///
/// Revokes a refresh token (with its whole family) or an access token (denylisted until it
/// expires). Unknown tokens and other clients' tokens get the same empty 200 (§2.2).
#[utoipa::path(
    post,
    path = "/oauth/revoke",
    tag = "oauth",
    request_body(
        content = super::schemas::TokenRequestByToken,
        content_type = "application/x-www-form-urlencoded",
    ),
    security((), ("client_secret_basic" = [])),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke; the body is empty.",
            headers(
                ("Cache-Control" = String, description = "`no-store`"),
                ("Pragma" = String, description = "`no-cache`"),
            )),
        (status = 400, response = super::error_responses::BadRequest),
        (status = 401, response = super::error_responses::Unauthorized),
        (status = 413, response = super::error_responses::PayloadTooLarge),
        (status = 500, response = super::error_responses::ServerError),
        (status = 503, response = super::error_responses::Unavailable),
    )
)]
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (params, auth) = read_request(&req, payload, &state).await?;
    state.oauth.revoke(&params, &auth).await?;
    Ok(no_store(HttpResponse::Ok().finish()))
}

/// Token introspection (RFC 7662)
///
/// For confidential clients registered with `--introspect`. Anything not valid right now (unknown,
/// expired, revoked, rotated, a disabled user's) is `{"active": false}` with no reason given.
#[utoipa::path(
    post,
    path = "/oauth/introspect",
    tag = "oauth",
    request_body(
        content = super::schemas::TokenRequestByToken,
        content_type = "application/x-www-form-urlencoded",
    ),
    security((), ("client_secret_basic" = [])),
    responses(
        (status = 200, description = "The token's state (RFC 7662 §2.2).",
            body = crate::oauth::Introspection, content_type = "application/json",
            headers(
                ("Cache-Control" = String, description = "`no-store`"),
                ("Pragma" = String, description = "`no-cache`"),
            )),
        (status = 400, response = super::error_responses::BadRequest),
        (status = 401, response = super::error_responses::Unauthorized),
        (status = 403, response = super::error_responses::Forbidden),
        (status = 413, response = super::error_responses::PayloadTooLarge),
        (status = 500, response = super::error_responses::ServerError),
        (status = 503, response = super::error_responses::Unavailable),
    )
)]
#[tracing::instrument(skip_all, fields(client_id))]
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (params, auth) = read_request(&req, payload, &state).await?;
    let answer = state.oauth.introspect(&params, &auth).await?;
    Ok(no_store(HttpResponse::Ok().json(answer)))
}
