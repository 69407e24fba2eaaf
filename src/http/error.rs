//! The one place where domain errors become HTTP responses (RFC 6749 §5.2 bodies), and the
//! codes each status carries, which the OpenAPI document lists from here.

use std::collections::BTreeSet;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

use crate::oauth::{BearerError, OAuthError};

/// An error response body (RFC 6749 §5.2).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    #[schema(schema_with = error_code_schema)]
    pub error: &'static str,
    /// Human-readable detail for the developer; never contains secrets or internal causes.
    #[schema(value_type = String)]
    pub error_description: std::borrow::Cow<'static, str>,
}

/// An [`OAuthError`] on its way out of a handler.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct ApiError(#[from] pub OAuthError);

pub fn status_of(err: &OAuthError) -> StatusCode {
    match err {
        OAuthError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        OAuthError::NotPermitted(_) => StatusCode::FORBIDDEN,
        OAuthError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        OAuthError::TemporarilyUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        OAuthError::Server(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The status of an error, logging the cause chain of an unexpected one (the exception
/// tracker lists it link by link).
pub fn log_and_status(err: &OAuthError) -> StatusCode {
    if let OAuthError::Server(source) = err {
        let mut causes = vec![source.to_string()];
        let mut cause = source.source();
        while let Some(c) = cause {
            causes.push(c.to_string());
            cause = c.source();
        }
        tracing::error!(
            error = %causes.join(": "),
            causes = %serde_json::Value::from(causes),
            "request failed"
        );
    }
    status_of(err)
}

/// A refused bearer token (RFC 6750 §3): 401 or 403 with `WWW-Authenticate`, or the OAuth
/// error's own answer.
pub fn bearer_error(err: &BearerError) -> HttpResponse {
    let (status, code, description) = match err {
        BearerError::InvalidToken(d) => (StatusCode::UNAUTHORIZED, "invalid_token", *d),
        BearerError::InsufficientScope(d) => (StatusCode::FORBIDDEN, "insufficient_scope", *d),
        BearerError::OAuth(e) => {
            return ApiError(match e {
                OAuthError::TemporarilyUnavailable(d) => {
                    OAuthError::TemporarilyUnavailable(d.clone())
                }
                other => OAuthError::Server(other.to_string().into()),
            })
            .error_response();
        }
    };
    let challenge =
        format!("Bearer realm=\"tessera\", error=\"{code}\", error_description=\"{description}\"");
    HttpResponse::build(status)
        .insert_header((header::WWW_AUTHENTICATE, challenge))
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .json(ErrorBody {
            error: code,
            error_description: description.into(),
        })
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        status_of(&self.0)
    }

    fn error_response(&self) -> HttpResponse {
        let err = &self.0;
        let mut response = HttpResponse::build(log_and_status(err));
        response
            .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        match err {
            OAuthError::InvalidClient(_) => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tessera\""),
                ));
            }
            OAuthError::TemporarilyUnavailable(_) => {
                response.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
            }
            _ => {}
        }
        response.json(ErrorBody {
            error: err.code(),
            error_description: err.description(),
        })
    }
}

/// One of every [`OAuthError`]. `variant_is_listed` fails to compile when a variant is added,
/// as a reminder to list it here too.
pub(super) fn every_error() -> Vec<OAuthError> {
    let all = vec![
        OAuthError::InvalidRequest("".into()),
        OAuthError::InvalidClient("".into()),
        OAuthError::InvalidGrant("".into()),
        OAuthError::UnauthorizedClient("".into()),
        OAuthError::UnsupportedGrantType("".into()),
        OAuthError::InvalidScope("".into()),
        OAuthError::NotPermitted("".into()),
        OAuthError::UnsupportedTokenType("".into()),
        OAuthError::PayloadTooLarge(0),
        OAuthError::TemporarilyUnavailable("".into()),
        OAuthError::Server("".into()),
    ];
    all.iter().for_each(variant_is_listed);
    all
}

fn variant_is_listed(err: &OAuthError) {
    match err {
        OAuthError::InvalidRequest(_)
        | OAuthError::InvalidClient(_)
        | OAuthError::InvalidGrant(_)
        | OAuthError::UnauthorizedClient(_)
        | OAuthError::UnsupportedGrantType(_)
        | OAuthError::InvalidScope(_)
        | OAuthError::NotPermitted(_)
        | OAuthError::UnsupportedTokenType(_)
        | OAuthError::PayloadTooLarge(_)
        | OAuthError::TemporarilyUnavailable(_)
        | OAuthError::Server(_) => {}
    }
}

/// The error codes answered with `status`, or with any status when `None`.
pub(super) fn codes(status: Option<u16>) -> Vec<&'static str> {
    let set: BTreeSet<&'static str> = every_error()
        .iter()
        .filter(|e| status.is_none_or(|s| status_of(e).as_u16() == s))
        .map(OAuthError::code)
        .collect();
    set.into_iter().collect()
}

/// The schema of [`ErrorBody::error`]: every code Tessera answers with.
fn error_code_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(
            "An RFC 6749 §5.2 error code (RFC 7009 §2.2.1's `unsupported_token_type` and \
             `temporarily_unavailable` included).",
        ))
        .enum_values(Some(codes(None)))
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::to_bytes;

    async fn render(
        err: OAuthError,
    ) -> (
        StatusCode,
        actix_web::http::header::HeaderMap,
        serde_json::Value,
    ) {
        let response = ApiError(err).error_response();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body()).await.expect("body");
        (
            status,
            headers,
            serde_json::from_slice(&body).expect("json"),
        )
    }

    #[actix_web::test]
    async fn invalid_client_is_401_with_basic_challenge() {
        let (status, headers, body) = render(OAuthError::invalid_client("nope")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            headers.get(header::WWW_AUTHENTICATE).map(|v| v.as_bytes()),
            Some(&b"Basic realm=\"tessera\""[..])
        );
        assert_eq!(
            headers.get(header::CACHE_CONTROL).map(|v| v.as_bytes()),
            Some(&b"no-store"[..])
        );
        assert_eq!(body["error"], "invalid_client");
        assert_eq!(body["error_description"], "nope");
    }

    #[actix_web::test]
    async fn each_code_has_its_status() {
        let cases = [
            (OAuthError::invalid_request("x"), 400, "invalid_request"),
            (OAuthError::invalid_grant("x"), 400, "invalid_grant"),
            (
                OAuthError::UnsupportedGrantType("x".into()),
                400,
                "unsupported_grant_type",
            ),
            (OAuthError::InvalidScope("x".into()), 400, "invalid_scope"),
            (
                OAuthError::UnauthorizedClient("x".into()),
                400,
                "unauthorized_client",
            ),
            (
                OAuthError::NotPermitted("x".into()),
                403,
                "unauthorized_client",
            ),
            (OAuthError::PayloadTooLarge(10), 413, "invalid_request"),
            (
                OAuthError::TemporarilyUnavailable("x".into()),
                503,
                "temporarily_unavailable",
            ),
        ];
        for (err, status, code) in cases {
            let (got, headers, body) = render(err).await;
            assert_eq!(got.as_u16(), status);
            assert_eq!(body["error"], code);
            assert!(headers.get(header::WWW_AUTHENTICATE).is_none());
        }
    }

    #[actix_web::test]
    async fn server_errors_hide_their_cause() {
        let (status, _, body) = render(OAuthError::Server("db password is hunter2".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"], "server_error");
        assert!(!body.to_string().contains("hunter2"));
    }
}
