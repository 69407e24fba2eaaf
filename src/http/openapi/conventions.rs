//! What every operation of the document shares, added where the annotations cannot say it: the
//! Basic security scheme, `X-Request-Id` on every operation and response, and response schemas
//! whose optional fields are left out rather than sent as `null`.

use std::collections::BTreeSet;

use utoipa::Modify;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::Response;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Required};

use crate::http::observe::REQUEST_ID;

pub(super) struct Conventions;

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
