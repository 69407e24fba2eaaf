//! `GET /openapi.json`: an OpenAPI 3.1 document that lists exactly the routes the app mounts,
//! and whose documented statuses are the ones the live routes answer with.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::helpers::{Backend, spawn_app};

async fn fetch(app: &crate::helpers::TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().ok(),
        Some("application/json")
    );
    assert!(response.headers().contains_key("x-request-id"));
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_lists_exactly_the_mounted_routes() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch(&app).await;

    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "OpenAPI {version}");

    let documented = tessera::http::openapi::operations_listed(&doc);
    let mounted: BTreeSet<(String, String)> = tessera::http::ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(documented, mounted);

    // Same bytes every time: built once.
    let again = fetch(&app).await;
    assert_eq!(doc, again);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers_with_a_documented_status() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch(&app).await;
    for (method, path) in tessera::http::openapi::operations_listed(&doc) {
        let operation = &doc["paths"][&path][method.to_ascii_lowercase()];
        let request = match method.as_str() {
            "GET" => app.http.get(app.url(&path)),
            "POST" => app
                .http
                .post(app.url(&path))
                .form(&[("grant_type", "password"), ("token", "x")]),
            other => panic!("undocumented method {other}"),
        };
        let response = request.send().await.expect("request");
        let status = response.status().as_u16().to_string();
        assert!(
            operation["responses"].get(&status).is_some(),
            "{method} {path} answered {status}, documented: {:?}",
            operation["responses"]
                .as_object()
                .map(|r| r.keys().collect::<Vec<_>>())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_responses_are_described_with_their_headers() {
    let app = spawn_app(Backend::Sqlite).await;
    let doc = fetch(&app).await;
    let token = &doc["paths"]["/oauth/token"]["post"];
    assert!(
        token["requestBody"]["content"]["application/x-www-form-urlencoded"].is_object(),
        "the token endpoint takes a form"
    );
    for status in ["400", "401", "413", "500", "503"] {
        assert!(token["responses"][status]["$ref"].is_string(), "{status}");
    }
    let responses = &doc["components"]["responses"];
    assert!(responses["Unauthorized"]["headers"]["WWW-Authenticate"].is_object());
    assert!(responses["Unavailable"]["headers"]["Retry-After"].is_object());
    let codes = doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["enum"]
        .as_array()
        .expect("error codes")
        .iter()
        .filter_map(Value::as_str)
        .collect::<BTreeSet<_>>();
    for code in [
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    ] {
        assert!(codes.contains(code), "{code} missing from {codes:?}");
    }
    let jwks = &doc["paths"]["/.well-known/jwks.json"]["get"]["responses"];
    assert!(jwks["200"]["headers"]["ETag"].is_object());
    assert!(jwks["200"]["headers"]["Cache-Control"].is_object());
    assert!(jwks["304"].is_object());
    assert!(
        doc["components"]["securitySchemes"]["client_secret_basic"]["scheme"] == "basic",
        "Basic client authentication is declared"
    );
}
