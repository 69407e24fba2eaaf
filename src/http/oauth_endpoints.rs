//! `POST /oauth/token` (RFC 6749 §3.2), `/oauth/revoke` (RFC 7009), `/oauth/introspect`
//! (RFC 7662): read the form, find the client's credentials, hand over to the domain.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::error::ApiError;
use super::{AppState, client_auth, form};

fn no_store(mut response: HttpResponse) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

#[tracing::instrument(skip_all, fields(grant_type, client_id))]
pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = form::read(&req, payload, state.max_body_bytes).await?;
    let auth = client_auth::extract(&req, &params)?;
    let span = tracing::Span::current();
    span.record("grant_type", params.get("grant_type").unwrap_or(""));
    span.record("client_id", auth.client_id().unwrap_or(""));
    let response = state.oauth.token(&params, &auth).await?;
    Ok(no_store(HttpResponse::Ok().json(response)))
}

#[tracing::instrument(skip_all, fields(client_id))]
pub async fn revoke(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = form::read(&req, payload, state.max_body_bytes).await?;
    let auth = client_auth::extract(&req, &params)?;
    tracing::Span::current().record("client_id", auth.client_id().unwrap_or(""));
    state.oauth.revoke(&params, &auth).await?;
    Ok(no_store(HttpResponse::Ok().finish()))
}

#[tracing::instrument(skip_all, fields(client_id))]
pub async fn introspect(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = form::read(&req, payload, state.max_body_bytes).await?;
    let auth = client_auth::extract(&req, &params)?;
    tracing::Span::current().record("client_id", auth.client_id().unwrap_or(""));
    let answer = state.oauth.introspect(&params, &auth).await?;
    Ok(no_store(HttpResponse::Ok().json(answer)))
}
