//! What a running process tells: its logs (never a secret), the trace context it joins, and
//! the spans it exports over OTLP.

use std::time::Duration;

use serde_json::Value;

use crate::common::http::{introspect, login_as, password_grant, refresh, revoke, token};
use crate::common::server::{CLIENT, PASSWORD, Server};
use crate::common::{Backend, TestDb};
use crate::with_password;

/// Every grant, introspection and revocation, with debug logging on; afterwards the logs hold
/// no password, client secret, token, or database password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_hold_secrets() {
    let db = TestDb::new(Backend::Postgres).await;
    // Trust authentication ignores the password, so a URL carrying one still connects.
    let url = with_password(&db.url, "Db-Pa55-Sekrit");
    let mut server = Server::start(&db, &[("TESSERA__DATABASE__URL", url.as_str())]);
    let http = reqwest::Client::new();
    server.wait_live(&http).await;
    let secret = server.seed();
    let (base, gw) = (server.base(), (CLIENT, secret.as_str()));

    let login = login_as(&http, &base, gw, "alice", PASSWORD).await;
    let access = login.field("access_token");
    let refresh1 = login.field("refresh_token");
    let refresh2 = refresh(&http, &base, gw, &refresh1)
        .await
        .expect("token")
        .field("refresh_token");
    let cc_access = token(&http, &base, gw, &[("grant_type", "client_credentials")])
        .await
        .expect("token")
        .field("access_token");
    let wrong = password_grant(&http, &base, gw, "alice", "Wrong-Guess-Pa55")
        .await
        .expect("token");
    assert_eq!(wrong.status, 400);
    let bad_client = token(
        &http,
        &base,
        (CLIENT, "tsc_not_the_secret_at_all"),
        &[("grant_type", "client_credentials")],
    )
    .await
    .expect("token");
    assert_eq!(bad_client.status, 401);
    introspect(&http, &base, gw, &access).await;
    revoke(&http, &base, gw, &refresh2).await;
    revoke(&http, &base, gw, &access).await;
    // Reuse detection path too.
    let reuse = refresh(&http, &base, gw, &refresh1).await.expect("token");
    assert_eq!(reuse.status, 400);

    server.signal("-TERM");
    server.wait_exit(Duration::from_secs(20));
    let logs = server.logs();
    assert!(
        logs.contains("request completed"),
        "debug logs were written: {logs}"
    );
    for (what, secret_text) in [
        ("password", PASSWORD),
        ("wrong password", "Wrong-Guess-Pa55"),
        ("client secret", secret.as_str()),
        ("presented client secret", "tsc_not_the_secret_at_all"),
        ("access token", access.as_str()),
        ("client_credentials token", cc_access.as_str()),
        ("refresh token", refresh1.as_str()),
        ("rotated refresh token", refresh2.as_str()),
        ("database password", "Db-Pa55-Sekrit"),
    ] {
        assert!(!logs.contains(secret_text), "the logs contain the {what}");
    }
    // A token's signature alone must not appear either (a partial leak).
    let signature = access.rsplit('.').next().expect("signature");
    assert!(!logs.contains(signature));
}

/// A W3C traceparent and a B3 header sent in come out as the request span's trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_trace_context_joins_the_trace() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = Server::start(&db, &[]);
    let http = reqwest::Client::new();
    server.wait_live(&http).await;
    let w3c = "4bf92f3577b34da6a3ce929d0e0e4736";
    let b3 = "80f198ee56343ba864fe8b2a57d3eff7";
    let r = http
        .get(server.url("/healthz"))
        .header("traceparent", format!("00-{w3c}-00f067aa0ba902b7-01"))
        .header("x-request-id", "req-abc-123")
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.headers()["x-request-id"], "req-abc-123");
    let r = http
        .get(server.url("/readyz"))
        .header("b3", format!("{b3}-e457b5a2e4d86bd1-1"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().contains_key("x-request-id"),
        "a request id is generated"
    );
    server.signal("-TERM");
    server.wait_exit(Duration::from_secs(20));
    let spans: Vec<Value> = server
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "request completed")
        .collect();
    // wait_ready polled /healthz too; ours is the one with our request id.
    let health = spans
        .iter()
        .find(|v| v["span"]["request_id"] == "req-abc-123")
        .expect("healthz span");
    assert_eq!(health["span"]["route"], "/healthz");
    assert_eq!(health["span"]["trace_id"], w3c);
    assert_eq!(health["span"]["request_id"], "req-abc-123");
    assert_eq!(health["span"]["status"], 200);
    let ready = spans
        .iter()
        .find(|v| v["span"]["route"] == "/readyz")
        .expect("readyz span");
    assert_eq!(ready["span"]["trace_id"], b3);
}

/// Reads HTTP/1.1 requests off one connection and keeps their bodies.
async fn serve_collector_connection(
    mut stream: tokio::net::TcpStream,
    bodies: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buffer.len() < end + 4 + length {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buffer[end + 4..end + 4 + length].to_vec();
        buffer.drain(..end + 4 + length);
        if let Ok(mut all) = bodies.lock() {
            all.push(body);
        }
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
}

/// With telemetry.otlp_endpoint set, request spans reach the collector as children of the
/// caller's trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_in_the_callers_trace() {
    let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("collector");
    let collector_port = listener.local_addr().expect("addr").port();
    let sink = bodies.clone();
    let collector = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_collector_connection(stream, sink.clone()));
        }
    });
    let db = TestDb::new(Backend::Sqlite).await;
    let endpoint = format!("http://127.0.0.1:{collector_port}/v1/traces");
    let mut server = Server::start(
        &db,
        &[("TESSERA__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str())],
    );
    let http = reqwest::Client::new();
    server.wait_live(&http).await;
    let trace_hex = "0af7651916cd43dd8448eb211c80319c";
    let response = http
        .get(server.url("/.well-known/jwks.json"))
        .header("traceparent", format!("00-{trace_hex}-b7ad6b7169203331-01"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(response.status(), 200);
    server.signal("-TERM");
    assert!(
        server.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        server.logs()
    );
    collector.abort();
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let parent: Vec<u8> = (0..8)
        .map(|i| u8::from_str_radix(&"b7ad6b7169203331"[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    let all = bodies.lock().expect("bodies").concat();
    assert!(!all.is_empty(), "the collector received spans");
    let contains = |needle: &[u8]| all.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(&trace_id),
        "an exported span carries the caller's trace id"
    );
    assert!(contains(&parent), "and the caller's span as its parent");
    assert!(
        contains(b"/.well-known/jwks.json"),
        "the span names its route"
    );
}
