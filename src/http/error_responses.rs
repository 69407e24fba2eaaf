//! The error responses of the OpenAPI document, one per status: each the [`ErrorBody`] narrowed
//! to the codes that status carries (taken from the error mapping, so the two cannot drift
//! apart), with the headers sent beside it.
//!
//! [`ErrorBody`]: super::error::ErrorBody

use utoipa::ToResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
use utoipa::openapi::{Content, Ref, RefOr};

use super::error::codes;

/// An error response with `status`: the [`ErrorBody`] narrowed to the codes that status carries.
fn error_response(status: u16, description: &str) -> Response {
    let narrowed = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(codes(Some(status)))),
    );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorBody"))
        .item(narrowed);
    let no_store = |value: &str| {
        HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
            .description(Some(format!("`{value}`")))
            .build()
    };
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", Content::new(Some(schema)))
        .header("Cache-Control", no_store("no-store"))
        .header("Pragma", no_store("no-cache"));
    if status == 401 {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .description(Some("`Basic realm=\"tessera\"` (RFC 6749 §5.2)"))
                .build(),
        );
    }
    if status == 503 {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0)),
                ))
                .description(Some("Seconds to wait before trying again."))
                .build(),
        );
    }
    response.build()
}

macro_rules! error_responses {
    ($($name:ident => $status:literal, $description:literal;)*) => {$(
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), error_response($status, $description).into())
            }
        }
    )*};
}

error_responses! {
    BadRequest => 400, "A malformed request (`invalid_request`: wrong Content-Type, a missing, \
        repeated or malformed parameter, credentials given twice), or a refused grant \
        (`invalid_grant`, `invalid_scope`, `unauthorized_client`, `unsupported_grant_type`, \
        `unsupported_token_type`).";
    Unauthorized => 401, "Client authentication failed (`invalid_client`).";
    Forbidden => 403, "The client authenticated but may not use this endpoint \
        (`unauthorized_client`).";
    PayloadTooLarge => 413, "The body is larger than `server.max_body_bytes` \
        (`invalid_request`).";
    ServerError => 500, "An internal error (`server_error`); the cause is logged, never sent.";
    Unavailable => 503, "The database is unreachable, no signing key is active, or too many \
        logins wait for a password-hashing slot (`temporarily_unavailable`).";
}
