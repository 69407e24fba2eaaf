//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, generated from the handlers'
//! `#[utoipa::path]` annotations and the types the handlers serialize, built once per process.
//!
//! What the annotations cannot say is added by [`Conventions`]. The error responses come from
//! [`error_responses`](super::error_responses), the schemas of forms and prepared bodies from
//! [`schemas`](super::schemas): the handlers refer to those, and this document to the handlers.

mod conventions;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::browser::responses::{
    BackToClient, ErrorPage, FormRefused, OnAfterLogout, PageShown, PageUnavailable,
};
use super::error::ErrorBody;
use super::error_responses::{
    BadRequest, Forbidden, PayloadTooLarge, ServerError, Unauthorized, Unavailable,
};
use conventions::Conventions;

/// The document, serialized once.
static DOCUMENT: OnceLock<Vec<u8>> = OnceLock::new();

/// The OpenAPI document as served.
pub fn document() -> &'static [u8] {
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serializes")
            .into_bytes()
    })
}

/// This document (OpenAPI 3.1).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "discovery",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document describing every route.",
            body = inline(OpenApiDocument), content_type = "application/json",
            headers(("Cache-Control" = String, description = "`public, max-age=3600`"))),
    )
)]
pub async fn openapi_json() -> HttpResponse {
    super::well_known::static_json(document())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tessera",
        description = "A small OAuth 2.0 authorization server: the token endpoint (RFC 6749) \
            with the authorization_code (PKCE, OpenID Connect), password, refresh_token and \
            client_credentials grants, Tessera's own sign-in pages, revocation \
            (RFC 7009), introspection (RFC 7662), server metadata (RFC 8414), the JWKS \
            (RFC 7517) that verifies its JWT access tokens (RFC 9068), and operational probes.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::browser::authorize_get,
        super::browser::authorize_post,
        super::browser::login,
        super::browser::consent,
        super::browser::logout,
        super::browser::logout_confirm,
        super::browser::userinfo,
        super::browser::stylesheet,
        super::well_known::openid_configuration,
        super::oauth_endpoints::token,
        super::oauth_endpoints::revoke,
        super::oauth_endpoints::introspect,
        super::well_known::jwks,
        super::well_known::metadata,
        openapi_json,
        super::health::healthz,
        super::health::readyz,
        super::metrics_endpoint::metrics,
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest, Unauthorized, Forbidden, PayloadTooLarge, ServerError, Unavailable,
            PageShown, BackToClient, ErrorPage, FormRefused, PageUnavailable, OnAfterLogout,
        ),
    ),
    modifiers(&Conventions),
    tags(
        (name = "oauth", description = "The OAuth 2.0 endpoints. Clients authenticate with \
            HTTP Basic (`client_secret_basic`, RFC 6749 §2.3.1: id and secret each \
            form-urlencoded before Base64), with `client_id` and `client_secret` in the form \
            (`client_secret_post`), or, when registered as public, with `client_id` alone."),
        (name = "browser", description = "Signing users in through Tessera's own pages: the \
            authorization code flow with PKCE and OpenID Connect, RP-initiated logout and \
            UserInfo."),
        (name = "discovery", description = "What clients and resource servers read to find and \
            verify Tessera."),
        (name = "operations", description = "Probes and metrics for orchestrators and monitoring."),
    ),
)]
struct ApiDoc;

/// An OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OpenApiDocument {
    /// The OpenAPI version, `3.1.x`.
    openapi: String,
    info: Value,
    paths: Value,
}

/// Every (method, path) the document describes, upper-case methods.
pub fn operations_listed(doc: &Value) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
        for (path, item) in paths {
            for method in [
                "get", "put", "post", "delete", "options", "head", "patch", "trace", "query",
            ] {
                if item.get(method).is_some() {
                    found.insert((method.to_ascii_uppercase(), path.clone()));
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;
    use crate::http::error::{codes, every_error, status_of};

    fn error_codes_by_status() -> BTreeMap<u16, Vec<&'static str>> {
        every_error()
            .iter()
            .map(|e| status_of(e).as_u16())
            .map(|s| (s, codes(Some(s))))
            .collect()
    }

    fn doc() -> Value {
        serde_json::from_slice(document()).expect("json")
    }

    #[test]
    fn is_openapi_3_1_and_lists_every_route() {
        let doc = doc();
        assert!(
            doc["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1."))
        );
        let routes: BTreeSet<(String, String)> = super::super::ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        assert_eq!(operations_listed(&doc), routes);
    }

    #[test]
    fn grant_types_match_the_domain() {
        let doc = doc();
        let branches = doc["components"]["schemas"]["TokenRequest"]["oneOf"]
            .as_array()
            .expect("oneOf")
            .iter()
            .map(|b| {
                let name = b["$ref"].as_str().expect("ref").rsplit('/').next().unwrap();
                doc["components"]["schemas"][name]["properties"]["grant_type"]["enum"][0]
                    .as_str()
                    .expect("grant type")
                    .to_owned()
            })
            .collect::<Vec<_>>();
        assert_eq!(branches, crate::oauth::GRANT_TYPES);
    }

    #[test]
    fn error_statuses_carry_their_codes() {
        let by_status = error_codes_by_status();
        assert_eq!(by_status[&401], ["invalid_client"]);
        assert_eq!(by_status[&413], ["invalid_request"]);
        assert_eq!(by_status[&503], ["temporarily_unavailable"]);
        assert!(by_status[&400].contains(&"invalid_grant"));
        let doc = doc();
        let enum_all = &doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["enum"];
        assert_eq!(enum_all.as_array().map(Vec::len), Some(codes(None).len()));
        let unauthorized = &doc["components"]["responses"]["Unauthorized"];
        assert!(unauthorized["headers"]["WWW-Authenticate"].is_object());
        assert!(
            doc["components"]["responses"]["Unavailable"]["headers"]["Retry-After"].is_object()
        );
    }

    #[test]
    fn optional_response_fields_are_never_null() {
        let doc = doc();
        let text = doc["components"]["schemas"]["Introspection"].to_string();
        assert!(!text.contains("null"), "{text}");
        let text = doc["components"]["schemas"]["TokenResponse"].to_string();
        assert!(!text.contains("null"), "{text}");
        let inactive = serde_json::to_value(crate::oauth::Introspection::default()).expect("json");
        assert_eq!(inactive, json!({ "active": false }));
    }
}
