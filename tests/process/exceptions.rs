//! Exception tracking: a real 500 reaches a Sentry-protocol receiver (a small local HTTP server
//! standing in for Sentry or GlitchTip) as one event naming the request, with none of the
//! secrets the failing request carried; a tracker that is down or hangs costs requests nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use sqlx::Connection;

use crate::common::http::{login_as, password_grant, token};
use crate::common::server::{CLIENT, KEK, PASSWORD, Server, free_port};
use crate::common::{Backend, TestDb};
use crate::with_password;

/// Accepts Sentry envelope POSTs and keeps their bodies.
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve_one(stream, &kept));
            }
        });
        Self { port, bodies }
    }

    fn dsn(&self) -> String {
        format!("http://publickey@127.0.0.1:{}/1", self.port)
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().map(|b| b.clone()).unwrap_or_default()
    }

    /// The event payloads received so far.
    fn events(&self) -> Vec<Value> {
        self.bodies()
            .iter()
            .flat_map(|body| body.lines().map(str::to_owned).collect::<Vec<_>>())
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .filter(|v| v.get("platform").is_some() && v.get("event_id").is_some())
            .collect()
    }
}

/// One HTTP/1.1 request per connection (or several, kept alive): reads it, answers 200.
fn serve_one(stream: std::net::TcpStream, kept: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            if line == "\r\n" {
                break;
            }
            if first {
                first = false;
                continue;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(mut bodies) = kept.lock() {
            bodies.push(String::from_utf8_lossy(&body).into_owned());
        }
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_error_reaches_the_tracker_without_secrets() {
    let receiver = Receiver::start();
    let db = TestDb::new(Backend::Postgres).await;
    // Trust authentication ignores the password, so it can be one the report must not show.
    let db_password = "db-pass-never-reported";
    let url = with_password(&db.url, db_password);
    let dsn = receiver.dsn();
    let mut server = Server::start(
        &db,
        &[
            ("TESSERA__DATABASE__URL", url.as_str()),
            ("TESSERA__EXCEPTIONS__DSN", dsn.as_str()),
            ("TESSERA__EXCEPTIONS__ENVIRONMENT", "ci-test"),
        ],
    );
    let http = reqwest::Client::new();
    server.wait_ready(&http).await;
    let secret = server.seed();
    let login = login_as(&http, &server.base(), (CLIENT, &secret), "alice", PASSWORD).await;
    let refresh = login.field("refresh_token");
    let access = login.field("access_token");

    // A table renamed away under the running server: the next login cannot be stored.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("db");
    sqlx::query("ALTER TABLE refresh_families RENAME TO refresh_families_away")
        .execute(&mut conn)
        .await
        .expect("rename");
    let response = http
        .post(server.url("/oauth/token"))
        .basic_auth("gw", Some(&secret))
        .header("Cookie", "session=cookie-never-reported")
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
            ("refresh_token", refresh.as_str()),
        ])
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), 500);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    sqlx::query("ALTER TABLE refresh_families_away RENAME TO refresh_families")
        .execute(&mut conn)
        .await
        .expect("rename back");

    let deadline = Instant::now() + Duration::from_secs(10);
    let ours = loop {
        let ours: Vec<Value> = receiver
            .events()
            .into_iter()
            .filter(|e| e["tags"]["request_id"] == request_id.as_str())
            .collect();
        if !ours.is_empty() || Instant::now() > deadline {
            break ours;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        ours.len(),
        1,
        "one event for the 500 (request {request_id}): {:?}",
        receiver.bodies()
    );
    let event = &ours[0];
    assert_eq!(event["tags"]["route"], "/oauth/token");
    assert_eq!(event["tags"]["client_id"], "gw");
    assert!(
        event["tags"]["trace_id"]
            .as_str()
            .is_some_and(|t| t.len() == 32),
        "{event}"
    );
    // "error" is the protocol's default level, left out when sent.
    assert!(event.get("level").is_none_or(|l| l == "error"), "{event}");
    assert_eq!(event["environment"], "ci-test");
    assert_eq!(
        event["release"],
        format!("tessera@{}", env!("CARGO_PKG_VERSION"))
    );
    let chain = event["exception"]["values"]
        .as_array()
        .expect("the cause chain");
    assert!(
        chain.iter().any(|e| e["value"]
            .as_str()
            .is_some_and(|v| v.contains("refresh_families"))),
        "the root cause is named: {event}"
    );
    let fingerprint = event["fingerprint"].to_string();
    assert!(
        !fingerprint.contains(&request_id),
        "grouped by cause, not ids: {fingerprint}"
    );

    let basic = base64::engine::general_purpose::STANDARD.encode(format!("gw:{secret}"));
    let everything = receiver.bodies().join("\n");
    for (what, value) in [
        ("password", PASSWORD),
        ("client secret", secret.as_str()),
        ("refresh token", refresh.as_str()),
        ("access token", access.as_str()),
        ("Basic credentials", basic.as_str()),
        ("cookie", "cookie-never-reported"),
        ("database password", db_password),
        ("key-encryption key", KEK),
    ] {
        assert!(!everything.contains(value), "the report holds the {what}");
    }
}

/// A tracker that refuses connections, or accepts them and never answers: requests are
/// answered as usual, and shutdown waits for it a couple of seconds at most.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tracker_down_or_hanging_costs_requests_nothing() {
    let dead_port = free_port();
    let hanging = TcpListener::bind("127.0.0.1:0").expect("bind");
    let hanging_port = hanging.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in hanging.incoming().flatten() {
            held.push(stream);
        }
    });
    for port in [dead_port, hanging_port] {
        let db = TestDb::new(Backend::Postgres).await;
        let dsn = format!("http://publickey@127.0.0.1:{port}/1");
        let mut server = Server::start(&db, &[("TESSERA__EXCEPTIONS__DSN", dsn.as_str())]);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        server.wait_ready(&http).await;
        let secret = server.seed();
        let (base, gw) = (server.base(), (CLIENT, secret.as_str()));
        let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("db");
        sqlx::query("ALTER TABLE refresh_families RENAME TO refresh_families_away")
            .execute(&mut conn)
            .await
            .expect("rename");
        // More failures than the report queue holds, each answered.
        for _ in 0..80 {
            let login = password_grant(&http, &base, gw, "alice", PASSWORD).await;
            assert_eq!(login.expect("answer").status, 500);
        }
        for _ in 0..20 {
            let cc = token(&http, &base, gw, &[("grant_type", "client_credentials")]).await;
            assert_eq!(cc.expect("answer").status, 200);
        }
        server.signal("-TERM");
        let started = Instant::now();
        let status = server.wait_exit(Duration::from_secs(15));
        assert!(status.success(), "{}", server.logs());
        eprintln!(
            "tracker on port {port}: shut down in {:?}",
            started.elapsed()
        );
    }
}
