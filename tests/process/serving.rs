//! A process at work: SIGTERM with a request in flight, a flood of logins, and clients
//! answered from memory while the CLI changes them from another process.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::http::{password_grant, token};
use crate::common::server::{CLIENT, PASSWORD, Server};
use crate::common::{Backend, TestDb};

/// SIGTERM while a slow login is hashing: the login completes, then the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = Server::start(
        &db,
        &[
            ("TESSERA__PASSWORDS__ARGON2_MEMORY_KIB", "65536"),
            ("TESSERA__PASSWORDS__ARGON2_ITERATIONS", "6"),
        ],
    );
    let http = reqwest::Client::new();
    server.wait_live(&http).await;
    let secret = server.seed();
    let started = Instant::now();
    let request = {
        let (http, base, secret) = (http.clone(), server.base(), secret.clone());
        tokio::spawn(async move {
            password_grant(&http, &base, (CLIENT, &secret), "alice", PASSWORD).await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.signal("-TERM");
    let response = request
        .await
        .expect("join")
        .expect("the in-flight request got an answer");
    assert_eq!(response.status, 200, "the login finished");
    assert!(response.body["access_token"].is_string());
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    eprintln!("slow login took {:?}", started.elapsed());
    // New connections are refused once it has stopped.
    assert!(http.get(server.url("/healthz")).send().await.is_err());
}

/// 200 concurrent logins with the production argon2 parameters on a 2-slot hasher: every answer
/// is a token, invalid_grant or 503 with Retry-After, and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flood_stays_bounded() {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = Server::start(
        &db,
        &[
            ("TESSERA__PASSWORDS__ARGON2_MEMORY_KIB", "19456"),
            ("TESSERA__PASSWORDS__ARGON2_ITERATIONS", "2"),
            ("TESSERA__PASSWORDS__QUEUE_TIMEOUT", "500ms"),
            ("TESSERA__LOG__LEVEL", "warn"),
        ],
    );
    let http = reqwest::Client::new();
    server.wait_live(&http).await;
    let secret = server.seed();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, base, secret) = (http.clone(), server.base(), secret.clone());
        let password = if i % 2 == 0 {
            PASSWORD.to_owned()
        } else {
            format!("wrong-{i}")
        };
        let username = if i % 3 == 0 {
            "alice".to_owned()
        } else {
            format!("user{i}")
        };
        tasks.push(tokio::spawn(async move {
            let r = password_grant(&http, &base, (CLIENT, &secret), &username, &password)
                .await
                .expect("answer");
            (r.status, r.retry_after, r.body)
        }));
    }
    let mut counts = std::collections::BTreeMap::new();
    for task in tasks {
        let (status, retry_after, body) = task.await.expect("join");
        match status {
            200 => assert!(body["access_token"].is_string()),
            400 => assert_eq!(body["error"], "invalid_grant"),
            503 => {
                assert_eq!(body["error"], "temporarily_unavailable");
                assert!(retry_after, "503 carries Retry-After");
            }
            other => panic!("unexpected status {other}: {body}"),
        }
        *counts.entry(status).or_insert(0) += 1;
    }
    let peak = server.peak_rss_kib();
    eprintln!(
        "login flood: statuses {counts:?}, peak RSS {} MiB",
        peak / 1024
    );
    assert!(
        counts.get(&503).copied().unwrap_or(0) > 0,
        "the queue bound was reached"
    );
    assert!(peak < 256 * 1024, "peak RSS {peak} KiB");
}

fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// On Postgres a server answers client authentication from memory once it has seen a client,
/// and a change the CLI makes (another process) still reaches it: it LISTENs for the NOTIFY
/// each change sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_come_from_memory_and_cli_changes_reach_the_server() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut server = Server::start(&db, &[]);
    let http = reqwest::Client::new();
    server.wait_live(&http).await;
    let secret = server.seed();
    let grant = |secret: String| {
        let (http, base) = (http.clone(), server.base());
        async move {
            token(
                &http,
                &base,
                (CLIENT, &secret),
                &[("grant_type", "client_credentials")],
            )
            .await
            .expect("answer")
            .status
        }
    };
    let lookups = || async {
        let text = http
            .get(format!(
                "http://127.0.0.1:{}/metrics",
                server.metrics_port()
            ))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        (
            counter(&text, "tessera_client_lookups_total{source=\"memory\"}"),
            counter(&text, "tessera_client_lookups_total{source=\"database\"}"),
        )
    };
    for _ in 0..50 {
        assert_eq!(grant(secret.clone()).await, 200);
    }
    let (memory, database) = lookups().await;
    eprintln!("client lookups after 50 grants: memory {memory}, database {database}");
    assert!(
        memory >= 45.0,
        "from memory: {memory} (database {database})"
    );

    let rotated: Value =
        serde_json::from_str(&server.cli(&["client", "rotate-secret", "gw", "--json"], None))
            .expect("json");
    let new_secret = rotated["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    assert_eq!(grant(new_secret).await, 200, "the new secret works at once");
    let start = Instant::now();
    while grant(secret.clone()).await != 401 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the old secret still works 5 s after the rotation"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!(
        "old secret refused {:?} after the CLI returned",
        start.elapsed()
    );
}
