//! `GET /openapi.json`: the OpenAPI 3.1 description of every route, generated from the handlers'
//! `#[utoipa::path]` annotations and the types the handlers serialize, built once per process.
//!
//! What the annotations cannot say is added here by [`Conventions`]: the Basic security scheme,
//! `X-Request-Id` on every operation and response, the error responses (their `error` codes are
//! taken from [`status_of`], so the document and the error mapping cannot drift apart), and the
//! tightening of response schemas whose optional fields are left out rather than sent as `null`.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use actix_web::HttpResponse;
use serde_json::Value;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{
    AllOfBuilder, ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, Required};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};

use super::error::{ErrorBody, status_of};
use super::observe::REQUEST_ID;
use crate::oauth::OAuthError;

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
            with the password, refresh_token and client_credentials grants, revocation \
            (RFC 7009), introspection (RFC 7662), server metadata (RFC 8414), the JWKS \
            (RFC 7517) that verifies its JWT access tokens (RFC 9068), and operational probes.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
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
        responses(BadRequest, Unauthorized, Forbidden, PayloadTooLarge, ServerError, Unavailable),
    ),
    modifiers(&Conventions),
    tags(
        (name = "oauth", description = "The OAuth 2.0 endpoints. Clients authenticate with \
            HTTP Basic (`client_secret_basic`, RFC 6749 §2.3.1: id and secret each \
            form-urlencoded before Base64), with `client_id` and `client_secret` in the form \
            (`client_secret_post`), or, when registered as public, with `client_id` alone."),
        (name = "discovery", description = "What clients and resource servers read to find and \
            verify Tessera."),
        (name = "operations", description = "Probes and metrics for orchestrators and monitoring."),
    ),
)]
struct ApiDoc;

// ---- request forms ------------------------------------------------------------------------

/// A token request (RFC 6749 §3.2), form-encoded, one of three grants. A parameter sent empty
/// counts as absent (so required ones are at least one character); a parameter sent twice is
/// `invalid_request`.
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(super) enum TokenRequest {
    Password(PasswordGrant),
    RefreshToken(RefreshTokenGrant),
    ClientCredentials(ClientCredentialsGrant),
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum PasswordGrantType {
    Password,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum RefreshTokenGrantType {
    RefreshToken,
}

#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum ClientCredentialsGrantType {
    ClientCredentials,
}

/// Resource owner password credentials grant (RFC 6749 §4.3.2).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct PasswordGrant {
    #[schema(inline)]
    grant_type: PasswordGrantType,
    /// The user's username (matched case-insensitively).
    #[schema(min_length = 1)]
    username: String,
    /// The user's password.
    #[schema(min_length = 1)]
    password: String,
    /// Space-separated scopes (RFC 6749 §3.3: each of `%x21 / %x23-5B / %x5D-7E`, at most 128
    /// characters); absent means every scope the client may use.
    #[schema(nullable = false, pattern = r"^[\x21\x23-\x5B\x5D-\x7E ]*$")]
    scope: Option<String>,
    /// For `client_secret_post`, or alone for a public client.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; never together with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// Refresh grant (RFC 6749 §6). The refresh token rotates: the response carries a new one.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct RefreshTokenGrant {
    #[schema(inline)]
    grant_type: RefreshTokenGrantType,
    /// The refresh token (`tsr_…`) from the last token response.
    #[schema(min_length = 1)]
    refresh_token: String,
    /// Narrows the new access token's scope; the refresh token keeps its original scope.
    #[schema(nullable = false, pattern = r"^[\x21\x23-\x5B\x5D-\x7E ]*$")]
    scope: Option<String>,
    /// For `client_secret_post`, or alone for a public client.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; never together with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// Client credentials grant (RFC 6749 §4.4.2): the client acts for itself (`sub` is its id).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct ClientCredentialsGrant {
    #[schema(inline)]
    grant_type: ClientCredentialsGrantType,
    /// Space-separated scopes (RFC 6749 §3.3: each of `%x21 / %x23-5B / %x5D-7E`, at most 128
    /// characters); absent means every scope the client may use.
    #[schema(nullable = false, pattern = r"^[\x21\x23-\x5B\x5D-\x7E ]*$")]
    scope: Option<String>,
    /// For `client_secret_post`.
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; never together with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

/// A revocation (RFC 7009 §2.1) or introspection (RFC 7662 §2.1) request, form-encoded.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct TokenRequestByToken {
    /// An access token (JWT) or a refresh token (`tsr_…`).
    #[schema(min_length = 1)]
    token: String,
    /// `access_token` or `refresh_token`. Accepted and ignored: the token's own form tells
    /// its kind.
    #[schema(nullable = false)]
    token_type_hint: Option<String>,
    /// For `client_secret_post` (or alone for a public client, revocation only).
    #[schema(nullable = false)]
    client_id: Option<String>,
    /// For `client_secret_post`; never together with HTTP Basic.
    #[schema(nullable = false)]
    client_secret: Option<String>,
}

// ---- response bodies served as prepared bytes ---------------------------------------------

/// A JSON Web Key Set (RFC 7517 §5): every key that signs now or signed a token still valid.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct JwkSet {
    keys: Vec<Jwk>,
}

/// A public signing key (RFC 7517 §4, RFC 7518 §6).
#[derive(ToSchema)]
#[allow(dead_code)]
pub(super) struct Jwk {
    /// `EC` (ES256), `OKP` (EdDSA) or `RSA` (RS256).
    kty: String,
    /// Key id, as in the `kid` header of the tokens it signs.
    kid: String,
    /// `ES256`, `EdDSA` or `RS256`.
    alg: String,
    /// Always `sig`.
    #[schema(rename = "use")]
    use_: String,
    /// `P-256` (EC) or `Ed25519` (OKP).
    #[schema(nullable = false)]
    crv: Option<String>,
    /// EC and OKP: the x coordinate or public key, base64url.
    #[schema(nullable = false)]
    x: Option<String>,
    /// EC: the y coordinate, base64url.
    #[schema(nullable = false)]
    y: Option<String>,
    /// RSA: the modulus, base64url.
    #[schema(nullable = false)]
    n: Option<String>,
    /// RSA: the public exponent, base64url.
    #[schema(nullable = false)]
    e: Option<String>,
}

/// An OpenAPI document.
#[derive(ToSchema)]
#[allow(dead_code)]
struct OpenApiDocument {
    /// The OpenAPI version, `3.1.x`.
    openapi: String,
    info: Value,
    paths: Value,
}

// ---- error responses ----------------------------------------------------------------------

/// One of every [`OAuthError`]. `variant_is_listed` fails to compile when a variant is added,
/// as a reminder to list it here too.
fn every_error() -> Vec<OAuthError> {
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
fn codes(status: Option<u16>) -> Vec<&'static str> {
    let set: BTreeSet<&'static str> = every_error()
        .iter()
        .filter(|e| status.is_none_or(|s| status_of(e).as_u16() == s))
        .map(OAuthError::code)
        .collect();
    set.into_iter().collect()
}

/// The schema of [`ErrorBody::error`]: every code Tessera answers with.
pub(super) fn error_code_schema() -> Schema {
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
        pub(super) struct $name;

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

// ---- what every operation shares ----------------------------------------------------------

struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "client_secret_basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "RFC 6749 §2.3.1: the client id and secret, each form-urlencoded, \
                         joined by `:` and Base64-encoded.",
                    ))
                    .build(),
            ),
        );
        for name in ["TokenResponse", "Introspection"] {
            if let Some(RefOr::T(schema)) = components.schemas.get_mut(name) {
                never_null(schema);
            }
        }
        if let Some(RefOr::T(Schema::Object(introspection))) =
            components.schemas.get_mut("Introspection")
        {
            introspection
                .properties
                .insert("aud".into(), audience_schema().into());
        }
        for response in components.responses.values_mut() {
            if let RefOr::T(response) = response {
                add_request_id_header(response);
            }
        }
        for item in doc.paths.paths.values_mut() {
            for operation in operations(item) {
                operation
                    .parameters
                    .get_or_insert_with(Vec::new)
                    .push(request_id_parameter().into());
                for response in operation.responses.responses.values_mut() {
                    if let RefOr::T(response) = response {
                        add_request_id_header(response);
                    }
                }
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
        &mut item.query,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

const REQUEST_ID_PATTERN: &str = "^[!-~]{1,128}$";

fn request_id_parameter() -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name("X-Request-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "A request id to carry into the logs and echo back; one is generated when absent \
             or not 1 to 128 visible ASCII characters.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(REQUEST_ID_PATTERN)),
        ))
        .build()
}

fn add_request_id_header(response: &mut Response) {
    debug_assert_eq!(REQUEST_ID, "x-request-id");
    response.headers.insert(
        "X-Request-Id".into(),
        HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(REQUEST_ID_PATTERN)),
            ))
            .description(Some("The request's id: the caller's, or a generated one."))
            .build()
            .into(),
    );
}

/// Tessera's response types leave absent fields out (`skip_serializing_if`) instead of sending
/// `null`, so their optional properties are never null.
fn never_null(schema: &mut Schema) {
    let Schema::Object(object) = schema else {
        return;
    };
    let required: BTreeSet<String> = object.required.iter().cloned().collect();
    for (name, property) in object.properties.iter_mut() {
        if required.contains(name) {
            continue;
        }
        match property {
            RefOr::T(Schema::Object(inner)) => {
                if let SchemaType::Array(types) = &inner.schema_type {
                    let rest: Vec<Type> = types
                        .iter()
                        .filter(|t| **t != Type::Null)
                        .cloned()
                        .collect();
                    inner.schema_type = match rest.as_slice() {
                        [one] => SchemaType::Type(one.clone()),
                        _ => SchemaType::Array(rest),
                    };
                }
            }
            RefOr::T(Schema::OneOf(one_of)) => {
                one_of.items.retain(|item| {
                    !matches!(item, RefOr::T(Schema::Object(o))
                        if o.schema_type == SchemaType::Type(Type::Null))
                });
                if let [only] = one_of.items.as_slice() {
                    *property = only.clone();
                }
            }
            _ => {}
        }
    }
}

/// `aud`: one audience, or several.
fn audience_schema() -> Schema {
    let string = || ObjectBuilder::new().schema_type(Type::String);
    OneOfBuilder::new()
        .item(string())
        .item(utoipa::openapi::schema::ArrayBuilder::new().items(string()))
        .description(Some(
            "The token's audience: one string, or an array of them.",
        ))
        .build()
        .into()
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
