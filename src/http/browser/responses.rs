//! The answers of the browser endpoints, as the OpenAPI document describes them: HTML pages,
//! and the redirect back to the client.

use utoipa::ToResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, RefOr};

fn header(description: &str) -> utoipa::openapi::header::Header {
    HeaderBuilder::new()
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .description(Some(description))
        .build()
}

/// A page (`text/html`), or with `location` a redirect carrying that `Location`.
fn answer(description: &str, html: bool, location: Option<&str>, retry: bool) -> Response {
    let mut response = ResponseBuilder::new()
        .description(description)
        .header("Cache-Control", header("`no-store`"));
    if html {
        response = response
            .content(
                "text/html",
                Content::new(Some(ObjectBuilder::new().schema_type(Type::String))),
            )
            .header(
                "Content-Security-Policy",
                header("No script; `frame-ancestors 'none'`."),
            );
    }
    if let Some(location) = location {
        response = response.header("Location", header(location));
    }
    if retry {
        response = response.header("Retry-After", header("Seconds to wait."));
    }
    response.build()
}

macro_rules! page_responses {
    ($($name:ident => $description:literal, $html:literal, $location:expr, $retry:literal;)*) => {$(
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), answer($description, $html, $location, $retry).into())
            }
        }
    )*};
}

page_responses! {
    PageShown => "A page: sign-in, consent, sign-out confirmation or signed out (HTML).",
        true, None, false;
    BackToClient => "Back to the client's redirect URI with `code`, `state` and `iss` \
        (RFC 9207), or with `error` once the client and redirect URI are known good.",
        false, Some("The redirect URI with the response parameters."), false;
    ErrorPage => "An error page, never a redirect: the client or redirect URI is not known \
        good, the request or form is malformed (content type, encoding, repeated fields, size), \
        or a form was already answered.", true, None, false;
    FormRefused => "An error page: the form lacks this browser's CSRF token, or came from \
        another site.", true, None, false;
    PageUnavailable => "An error page: the server cannot answer now.", true, None, true;
    OnAfterLogout => "Signed out: on to the post-logout redirect URI.",
        false, Some("The post-logout redirect URI with `state`."), false;
}
