//! `tessera serve` run as a process: what only a real process shows (its logs, signals, TLS,
//! memory under a flood).

#[path = "../common/mod.rs"]
mod common;

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Backend, TestDb};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tessera");
const PASSWORD: &str = "Unmistakable-Pa55phrase-7Q";
/// The key-encryption key every server here runs with.
const KEK: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

mod exceptions;

struct Server {
    child: Child,
    port: u16,
    metrics_port: u16,
    log: PathBuf,
    env: Vec<(String, String)>,
    scheme: &'static str,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    /// Starts the binary with `extra` settings on `db`, logging JSON at debug level to a file.
    fn start(db: &TestDb, extra: &[(&str, &str)]) -> Server {
        Self::start_with_umask(db, extra, None)
    }

    /// [`Server::start`], the process running under `umask` when given.
    fn start_with_umask(db: &TestDb, extra: &[(&str, &str)], umask: Option<&str>) -> Server {
        let port = free_port();
        let metrics_port = free_port();
        let mut env: Vec<(String, String)> = vec![
            ("TESSERA__SERVER__BIND".into(), format!("127.0.0.1:{port}")),
            (
                "TESSERA__METRICS__BIND".into(),
                format!("127.0.0.1:{metrics_port}"),
            ),
            (
                "TESSERA__SERVER__ISSUER".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("TESSERA__DATABASE__URL".into(), db.url.clone()),
            ("TESSERA__KEYS__ENCRYPTION_KEY".into(), KEK.into()),
            ("TESSERA__LOG__FORMAT".into(), "json".into()),
            ("TESSERA__LOG__LEVEL".into(), "debug".into()),
            (
                "TESSERA__PASSWORDS__ARGON2_MEMORY_KIB".into(),
                "1024".into(),
            ),
            ("TESSERA__PASSWORDS__ARGON2_ITERATIONS".into(), "1".into()),
        ];
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let scheme = if extra
            .iter()
            .any(|(k, _)| *k == "TESSERA__SERVER__TLS__CERT")
        {
            "https"
        } else {
            "http"
        };
        let log = db.path().join(format!("serve-{port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let mut command = match umask {
            None => Command::new(BIN),
            Some(mask) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("umask {mask} && exec \"$0\" \"$@\""), BIN]);
                sh
            }
        };
        let child = command
            .arg("serve")
            .current_dir(db.path())
            .env_remove("RUST_LOG")
            .env_remove("DATABASE_URL")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(out.try_clone().expect("clone")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn tessera serve");
        Server {
            child,
            port,
            metrics_port,
            log,
            env,
            scheme,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(self.url("/healthz")).send().await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited with {status}: {}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not come up: {}", self.logs());
    }

    /// Runs the CLI against the same database and settings; it must succeed.
    fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.run_cli(args, stdin, &[]);
        assert!(
            out.status.success(),
            "tessera {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI against the same database and settings, `extra` settings over them.
    fn run_cli(
        &self,
        args: &[&str],
        stdin: Option<&str>,
        extra: &[(&str, &str)],
    ) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env_remove("DATABASE_URL")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("cli");
        if let Some(input) = stdin {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("cli output")
    }

    /// alice's password grant through client `gw`, with `extra` form fields.
    async fn login(
        &self,
        http: &reqwest::Client,
        secret: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut form = vec![
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ];
        form.extend_from_slice(extra);
        http.post(self.url("/oauth/token"))
            .basic_auth("gw", Some(secret))
            .form(&form)
            .send()
            .await
            .expect("answer")
    }

    /// Seeds a role, user alice and a confidential client; returns the client secret.
    fn seed(&self) -> String {
        self.cli(&["role", "add", "admin"], None);
        self.cli(
            &[
                "user",
                "add",
                "alice",
                "--role",
                "admin",
                "--password-stdin",
            ],
            Some(&format!("{PASSWORD}\n")),
        );
        let out = self.cli(
            &[
                "client",
                "add",
                "gw",
                "--grant",
                "password",
                "--grant",
                "refresh_token",
                "--grant",
                "client_credentials",
                "--scope",
                "read",
                "--introspect",
                "--json",
            ],
            None,
        );
        let client: Value = serde_json::from_str(&out).expect("client json");
        client["client_secret"].as_str().expect("secret").to_owned()
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Peak resident set size (VmHWM) in KiB.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn token(
    http: &reqwest::Client,
    server: &Server,
    secret: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    http.post(server.url("/oauth/token"))
        .basic_auth("gw", Some(secret))
        .form(form)
        .send()
        .await
        .expect("token")
}

/// Every grant, introspection and revocation, with debug logging on; afterwards the logs hold
/// no password, client secret, token, or database password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_hold_secrets() {
    let db = TestDb::new(Backend::Postgres).await;
    // Trust authentication ignores the password, so a URL carrying one still connects.
    let url = db.url.replacen(
        "postgres://postgres@",
        "postgres://postgres:Db-Pa55-Sekrit@",
        1,
    );
    let mut server = Server::start(&db, &[("TESSERA__DATABASE__URL", url.as_str())]);
    let http = reqwest::Client::new();
    server.wait_ready(&http).await;
    let secret = server.seed();

    let login: Value = token(
        &http,
        &server,
        &secret,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", PASSWORD),
        ],
    )
    .await
    .json()
    .await
    .expect("json");
    let access = login["access_token"].as_str().expect("access").to_owned();
    let refresh = login["refresh_token"].as_str().expect("refresh").to_owned();
    let refreshed: Value = token(
        &http,
        &server,
        &secret,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await
    .json()
    .await
    .expect("json");
    let refresh2 = refreshed["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let cc: Value = token(
        &http,
        &server,
        &secret,
        &[("grant_type", "client_credentials")],
    )
    .await
    .json()
    .await
    .expect("json");
    let cc_access = cc["access_token"].as_str().expect("access").to_owned();
    let wrong = token(
        &http,
        &server,
        &secret,
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "Wrong-Guess-Pa55"),
        ],
    )
    .await;
    assert_eq!(wrong.status(), 400);
    let bad_client = token(
        &http,
        &server,
        "tsc_not_the_secret_at_all",
        &[("grant_type", "client_credentials")],
    )
    .await;
    assert_eq!(bad_client.status(), 401);
    for (path, tok) in [
        ("/oauth/introspect", &access),
        ("/oauth/revoke", &refresh2),
        ("/oauth/revoke", &access),
    ] {
        let r = http
            .post(server.url(path))
            .basic_auth("gw", Some(&secret))
            .form(&[("token", tok.as_str())])
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 200);
    }
    // Reuse detection path too.
    let reuse = token(
        &http,
        &server,
        &secret,
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    )
    .await;
    assert_eq!(reuse.status(), 400);

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
        ("refresh token", refresh.as_str()),
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
    server.wait_ready(&http).await;
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
    server.wait_ready(&http).await;
    let secret = server.seed();
    let started = Instant::now();
    let request = {
        let (http, url, secret) = (http.clone(), server.url("/oauth/token"), secret.clone());
        tokio::spawn(async move {
            http.post(url)
                .basic_auth("gw", Some(secret))
                .form(&[
                    ("grant_type", "password"),
                    ("username", "alice"),
                    ("password", PASSWORD),
                ])
                .send()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    server.signal("-TERM");
    let response = request
        .await
        .expect("join")
        .expect("the in-flight request got an answer");
    assert_eq!(response.status(), 200, "the login finished");
    let body: Value = response.json().await.expect("json");
    assert!(body["access_token"].is_string());
    let status = server.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "exit status {status}");
    eprintln!("slow login took {:?}", started.elapsed());
    // New connections are refused once it has stopped.
    assert!(http.get(server.url("/healthz")).send().await.is_err());
}

/// `tessera serve` with HTTPS on a self-signed certificate for 127.0.0.1 written into the test's
/// directory, up and answering; and a client that trusts that certificate.
async fn start_tls(db: &TestDb) -> (Server, reqwest::Client) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("cert");
    let cert_path = db.path().join("tls.crt");
    let key_path = db.path().join("tls.key");
    std::fs::write(&cert_path, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).expect("write key");
    let mut server = Server::start(
        db,
        &[
            (
                "TESSERA__SERVER__TLS__CERT",
                cert_path.to_str().expect("utf8"),
            ),
            (
                "TESSERA__SERVER__TLS__KEY",
                key_path.to_str().expect("utf8"),
            ),
        ],
    );
    let root = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes()).expect("root");
    let https = reqwest::Client::builder()
        .add_root_certificate(root)
        .build()
        .expect("client");
    server.wait_ready(&https).await;
    (server, https)
}

/// HTTPS with a self-signed certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_tls_with_a_self_signed_certificate() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (server, https) = start_tls(&db).await;
    let jwks: Value = https
        .get(server.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1));
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", server.port))
        .send()
        .await;
    assert!(
        plain.is_err() || plain.is_ok_and(|r| r.status() != 200),
        "plain HTTP is not served"
    );
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
    server.wait_ready(&http).await;
    let secret = server.seed();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let (http, url, secret) = (http.clone(), server.url("/oauth/token"), secret.clone());
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
            let r = http
                .post(url)
                .basic_auth("gw", Some(secret))
                .form(&[
                    ("grant_type", "password"),
                    ("username", username.as_str()),
                    ("password", password.as_str()),
                ])
                .send()
                .await
                .expect("answer");
            let status = r.status().as_u16();
            let retry_after = r.headers().contains_key("retry-after");
            let body: Value = r.json().await.expect("json body");
            (status, retry_after, body)
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
    server.wait_ready(&http).await;
    let secret = server.seed();
    let grant = |secret: String| {
        let (http, url) = (http.clone(), server.url("/oauth/token"));
        async move {
            let r = http
                .post(url)
                .basic_auth("gw", Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("answer");
            r.status().as_u16()
        }
    };
    let lookups = || async {
        let text = http
            .get(format!("http://127.0.0.1:{}/metrics", server.metrics_port))
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

/// With SQLite and no key-encryption key configured, the first start writes one beside the
/// database (mode 0600) and warns; a key file others can read is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_default_creates_a_private_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let db = TestDb::new(Backend::Sqlite).await;
    let mut server = Server::start(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")]);
    let http = reqwest::Client::new();
    server.wait_ready(&http).await;
    let kek = db.path().join("tessera.db.kek");
    let mode = std::fs::metadata(&kek)
        .expect("key file exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(
        server.logs().contains("keys.encryption_key is not set"),
        "it warns"
    );
    server.signal("-TERM");
    assert!(server.wait_exit(Duration::from_secs(20)).success());

    // Restarting reuses the same key: the signing key still decrypts.
    let mut again = Server::start(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")]);
    again.wait_ready(&http).await;
    assert_eq!(
        http.get(again.url("/readyz"))
            .send()
            .await
            .expect("readyz")
            .status(),
        200
    );
    again.signal("-TERM");
    assert!(again.wait_exit(Duration::from_secs(20)).success());

    std::fs::set_permissions(&kek, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let mut refused = Server::start(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")]);
    let status = refused.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    assert!(refused.logs().contains("chmod 600"), "{}", refused.logs());
}

/// With Postgres and no key-encryption key, `serve` refuses to start and says what to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_without_an_encryption_key_refuses_to_start() {
    let db = TestDb::new(Backend::Postgres).await;
    let mut server = Server::start(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")]);
    let status = server.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let logs = server.logs();
    assert!(
        logs.contains("keys.encryption_key is required with Postgres"),
        "{logs}"
    );
    assert_eq!(
        logs.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{logs}"
    );
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
    server.wait_ready(&http).await;
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

/// The SQLite database, its -wal and -shm files and the key file are readable by their owner
/// alone, whatever the umask the server starts under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_are_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    for umask in ["0000", "0022"] {
        let db = TestDb::new(Backend::Sqlite).await;
        let mut server =
            Server::start_with_umask(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")], Some(umask));
        server.wait_ready(&reqwest::Client::new()).await;
        server.seed();
        // While the server runs, SQLite keeps the write-ahead log and its index beside the file.
        for file in [
            "tessera.db",
            "tessera.db-wal",
            "tessera.db-shm",
            "tessera.db.kek",
        ] {
            let mode = std::fs::metadata(db.path().join(file))
                .unwrap_or_else(|e| panic!("umask {umask}: {file}: {e}"))
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o777,
                0o600,
                "umask {umask}: {file} is {:o}",
                mode & 0o777
            );
        }
        server.signal("-TERM");
        assert!(server.wait_exit(Duration::from_secs(20)).success());
    }
    // The database path a symlink to a file not created yet: the target is created private.
    let db = TestDb::new(Backend::Sqlite).await;
    std::os::unix::fs::symlink("real.db", db.path().join("tessera.db")).expect("symlink");
    let mut server =
        Server::start_with_umask(&db, &[("TESSERA__KEYS__ENCRYPTION_KEY", "")], Some("0022"));
    server.wait_ready(&reqwest::Client::new()).await;
    server.seed();
    for file in ["real.db", "real.db-wal", "real.db-shm"] {
        let mode = std::fs::metadata(db.path().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is {:o}", mode & 0o777);
    }
    server.signal("-TERM");
    assert!(server.wait_exit(Duration::from_secs(20)).success());
}

/// `tessera healthcheck` probes the listener the settings name: 0 and one line on stdout when
/// it answers 200; 1 and one line on stderr when nothing listens or it is not ready.
async fn healthcheck_probes_the_configured_listener(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut server = Server::start(&db, &[]);
    server.wait_ready(&reqwest::Client::new()).await;
    let port = server.port.to_string();
    let check = |args: &[&str], extra: &[(&str, &str)]| {
        let out = server.run_cli(args, None, extra);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stdout, stderr)
    };
    let ready = format!("ok: http://127.0.0.1:{port}/readyz answered 200\n");
    assert_eq!(
        check(&["healthcheck"], &[]),
        (Some(0), ready.clone(), String::new())
    );
    assert_eq!(
        check(&["healthcheck", "--live"], &[]),
        (
            Some(0),
            format!("ok: http://127.0.0.1:{port}/healthz answered 200\n"),
            String::new()
        )
    );
    // A wildcard bind is probed on loopback.
    let wildcard = format!("0.0.0.0:{port}");
    assert_eq!(
        check(&["healthcheck"], &[("TESSERA__SERVER__BIND", &wildcard)]),
        (Some(0), ready, String::new())
    );

    let nothing = format!("127.0.0.1:{}", free_port());
    let (code, stdout, stderr) = check(&["healthcheck"], &[("TESSERA__SERVER__BIND", &nothing)]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.starts_with(&format!("error: http://{nothing}/readyz: no answer"))
            && stderr.lines().count() == 1,
        "{stderr}"
    );

    if backend == Backend::Postgres {
        // The database gone: not ready (1), still alive (0).
        db.drop_database().await;
        let (code, _, stderr) = check(&["healthcheck", "--timeout", "20s"], &[]);
        assert_eq!(code, Some(1), "{stderr}");
        assert!(
            stderr.contains("/readyz answered 503") && stderr.contains("database unreachable"),
            "{stderr}"
        );
        assert_eq!(check(&["healthcheck", "--live"], &[]).0, Some(0));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_probes_the_configured_listener_sqlite() {
    healthcheck_probes_the_configured_listener(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_probes_the_configured_listener_postgres() {
    healthcheck_probes_the_configured_listener(Backend::Postgres).await;
}

/// With `server.tls` set, the probe speaks HTTPS and trusts exactly the configured certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_speaks_tls_to_a_tls_listener() {
    let db = TestDb::new(Backend::Sqlite).await;
    let (server, _https) = start_tls(&db).await;
    let out = server.run_cli(&["healthcheck"], None, &[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "ok: https://127.0.0.1:{}/readyz answered 200\n",
            server.port
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));

    // Another certificate than the one the server presents is refused.
    let other = db.path().join("other.crt");
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("cert");
    std::fs::write(&other, cert.cert.pem()).expect("write cert");
    let out = server.run_cli(
        &["healthcheck"],
        None,
        &[("TESSERA__SERVER__TLS__CERT", other.to_str().expect("utf8"))],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not server.tls.cert"), "{stderr}");
}
