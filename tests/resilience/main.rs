//! Resilience suite (issue 8, items 1, 2, 3 and 6): several `tessera serve` processes on one
//! Postgres, `kill -9` under a refresh load, a database outage during load, and response
//! timing. Every test drives real processes over real HTTP on 127.0.0.1, and every loop is
//! bounded in time so that nothing can hang CI.
//!
//! The binary is the debug build that `cargo test` makes (`CARGO_BIN_EXE_tessera`): a release
//! build takes minutes on CI's 2 cores. The figures printed are therefore debug-build figures;
//! the assertions are about correctness and generous bounds, never about speed.
//!
//! The tests take one lock and so run one at a time: one loads the machine (the crash test),
//! another measures it (the timing test), and they must not disturb each other.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Backend, TestDb};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The debug binary built by `cargo test` (see the module comment).
const BIN: &str = env!("CARGO_BIN_EXE_tessera");
const PASSWORD: &str = "Unmistakable-Pa55phrase-7Q";
const KEK: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// Instances behind one load balancer share one public issuer URL; a token from one instance
/// must verify at every other.
const ISSUER: &str = "http://tessera.cluster.test";
const CLIENT: &str = "gw";

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The settings every process gets: the shared issuer and key-encryption key, cheap argon2
/// (the same for every account and for the dummy hash), quiet JSON logs.
fn base_env(db_url: &str, port: u16) -> Vec<(String, String)> {
    [
        ("TESSERA__SERVER__BIND", format!("127.0.0.1:{port}")),
        ("TESSERA__METRICS__BIND", "127.0.0.1:0".to_owned()),
        ("TESSERA__SERVER__ISSUER", ISSUER.to_owned()),
        ("TESSERA__DATABASE__URL", db_url.to_owned()),
        ("TESSERA__KEYS__ENCRYPTION_KEY", KEK.to_owned()),
        ("TESSERA__LOG__FORMAT", "json".to_owned()),
        ("TESSERA__LOG__LEVEL", "warn".to_owned()),
        ("TESSERA__PASSWORDS__ARGON2_MEMORY_KIB", "1024".to_owned()),
        ("TESSERA__PASSWORDS__ARGON2_ITERATIONS", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Runs the admin CLI with `env`; panics unless it succeeds.
fn run_cli(env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cli");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("cli output");
    assert!(
        out.status.success(),
        "tessera {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One `tessera serve` process.
struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    starts: u32,
}

impl Server {
    fn start(db: &TestDb, extra: &[(&str, &str)]) -> Server {
        Server::start_on(&db.path(), &db.url, extra)
    }

    /// Starts the binary on `db_url` (which may differ from the test database's own URL, e.g.
    /// through a proxy), with `extra` settings on top of [`base_env`].
    fn start_on(dir: &Path, db_url: &str, extra: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut env = base_env(db_url, port);
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        let log = dir.join(format!("serve-{port}-1.log"));
        let child = Self::spawn(dir, &env, &log);
        Server {
            child,
            port,
            dir: dir.to_path_buf(),
            env,
            log,
            starts: 1,
        }
    }

    fn spawn(dir: &Path, env: &[(String, String)], log: &Path) -> Child {
        let out = std::fs::File::create(log).expect("log file");
        Command::new(BIN)
            .arg("serve")
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env_remove("DATABASE_URL")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(out.try_clone().expect("clone")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn tessera serve")
    }

    /// `kill -9`: no shutdown hook runs, in-flight requests die with the process.
    fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// Starts the process again on the same port, database and settings.
    fn restart(&mut self) {
        assert!(
            self.child.try_wait().expect("wait").is_some(),
            "still running"
        );
        self.starts += 1;
        self.log = self
            .dir
            .join(format!("serve-{}-{}.log", self.port, self.starts));
        self.child = Self::spawn(&self.dir, &self.env, &self.log);
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Waits (at most 30 s) until /readyz says the database answers and a key signs.
    async fn wait_ready(&mut self, http: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(self.url("/readyz")).send().await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited with {status}: {}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become ready: {}", self.logs());
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        run_cli(&self.env, args, stdin)
    }

    fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli(args, None);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    fn add_user(&self, name: &str) {
        self.cli(
            &["user", "add", name, "--role", "admin", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        );
    }

    /// A role, user alice and the confidential client `gw`; returns the client secret.
    fn seed(&self) -> String {
        self.cli(&["role", "add", "admin"], None);
        self.add_user("alice");
        let client = self.cli_json(&[
            "client",
            "add",
            CLIENT,
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
        ]);
        client["client_secret"].as_str().expect("secret").to_owned()
    }

    /// `tessera audit --action ACTION --json` rows.
    fn audit(&self, action: &str) -> Vec<Value> {
        let rows = self.cli_json(&["audit", "--action", action, "--limit", "1000", "--json"]);
        rows.as_array().expect("audit rows").clone()
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        let tail: Vec<&str> = s.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What came back for one request.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    body: Value,
    retry_after: bool,
    elapsed: Duration,
}

impl Answer {
    fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    fn field(&self, name: &str) -> String {
        self.body[name]
            .as_str()
            .unwrap_or_else(|| panic!("no {name} in {} {}", self.status, self.body))
            .to_owned()
    }

    fn is_invalid_grant(&self) -> bool {
        self.status == 400 && self.error() == "invalid_grant"
    }

    fn is_unavailable(&self) -> bool {
        self.status == 503 && self.error() == "temporarily_unavailable" && self.retry_after
    }
}

async fn send(req: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let started = Instant::now();
    let r = req.send().await?;
    let status = r.status().as_u16();
    let retry_after = r.headers().contains_key(reqwest::header::RETRY_AFTER);
    let text = r.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Answer {
        status,
        body,
        retry_after,
        elapsed: started.elapsed(),
    })
}

/// A form POST to `path` at `base`, authenticated as `client_id`/`secret` with Basic.
fn post(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    (client_id, secret): (&str, &str),
    form: &[(&str, &str)],
) -> reqwest::RequestBuilder {
    http.post(format!("{base}{path}"))
        .basic_auth(client_id, Some(secret))
        .form(form)
}

async fn password_grant(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    username: &str,
    password: &str,
) -> Result<Answer, reqwest::Error> {
    send(post(
        http,
        base,
        "/oauth/token",
        (CLIENT, secret),
        &[
            ("grant_type", "password"),
            ("username", username),
            ("password", password),
        ],
    ))
    .await
}

async fn refresh(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    token: &str,
) -> Result<Answer, reqwest::Error> {
    refresh_asking(http, base, secret, token, &[]).await
}

/// A refresh asking for the `read` scope again: a narrower scope takes the multi-statement
/// rotation, whose reply after the claim names the user.
async fn refresh_narrowed(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    token: &str,
) -> Result<Answer, reqwest::Error> {
    refresh_asking(http, base, secret, token, &[("scope", "read")]).await
}

async fn refresh_asking(
    http: &reqwest::Client,
    base: &str,
    secret: &str,
    token: &str,
    extra: &[(&str, &str)],
) -> Result<Answer, reqwest::Error> {
    let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", token)];
    form.extend_from_slice(extra);
    send(post(http, base, "/oauth/token", (CLIENT, secret), &form)).await
}

/// Logs alice in; returns the whole token response.
async fn login(http: &reqwest::Client, base: &str, secret: &str) -> Answer {
    let a = password_grant(http, base, secret, "alice", PASSWORD)
        .await
        .expect("login");
    assert_eq!(a.status, 200, "login: {}", a.body);
    a
}

async fn introspect(http: &reqwest::Client, base: &str, secret: &str, token: &str) -> Value {
    let a = send(post(
        http,
        base,
        "/oauth/introspect",
        (CLIENT, secret),
        &[("token", token)],
    ))
    .await
    .expect("introspect");
    assert_eq!(a.status, 200, "introspect: {}", a.body);
    a.body
}

async fn revoke(http: &reqwest::Client, base: &str, secret: &str, token: &str) {
    let a = send(post(
        http,
        base,
        "/oauth/revoke",
        (CLIENT, secret),
        &[("token", token)],
    ))
    .await
    .expect("revoke");
    assert_eq!(a.status, 200, "revoke: {}", a.body);
}

async fn get(http: &reqwest::Client, url: &str) -> Answer {
    send(http.get(url)).await.expect("GET")
}

/// The `kid` in a JWT's header.
fn kid_of(jwt: &str) -> String {
    jsonwebtoken::decode_header(jwt)
        .expect("JWT header")
        .kid
        .expect("kid")
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        // Bounds every request, so no loop below can hang on a dead peer.
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client")
}

// ---------------------------------------------------------------------------------------------
// 1. Two instances, one Postgres
// ---------------------------------------------------------------------------------------------

/// Two processes on two ports, one database: tokens travel between them, a revocation at one
/// is seen at the other at once, a refresh race spread over both has one winner and revokes
/// the family, and login failures at both count toward one throttle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_one_postgres() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let settings = [("TESSERA__SECURITY__MAX_FAILURES", "3")];
    let http = http_client();
    let mut a = Server::start(&db, &settings);
    a.wait_ready(&http).await;
    let secret = a.seed();
    a.add_user("carol");
    let mut b = Server::start(&db, &settings);
    b.wait_ready(&http).await;
    let (a_url, b_url) = (a.base(), b.base());

    // Both publish the one key and sign with it.
    let jwks_a = get(&http, &a.url("/.well-known/jwks.json")).await.body;
    let jwks_b = get(&http, &b.url("/.well-known/jwks.json")).await.body;
    assert_eq!(jwks_a, jwks_b, "both instances publish the same keys");

    // A token issued by A refreshes at B.
    let first = login(&http, &a_url, &secret).await;
    let at_b = refresh(&http, &b_url, &secret, &first.field("refresh_token"))
        .await
        .expect("refresh at B");
    assert_eq!(
        at_b.status, 200,
        "A's refresh token works at B: {}",
        at_b.body
    );
    assert_eq!(
        kid_of(&first.field("access_token")),
        kid_of(&at_b.field("access_token")),
        "A and B sign with the same key"
    );
    let refresh_b = at_b.field("refresh_token");
    let access_b = at_b.field("access_token");
    // Each instance accepts the other's access tokens at introspection.
    assert_eq!(
        introspect(&http, &a_url, &secret, &access_b).await["active"],
        true
    );
    assert_eq!(
        introspect(&http, &b_url, &secret, &first.field("access_token")).await["active"],
        true
    );
    assert_eq!(
        introspect(&http, &b_url, &secret, &refresh_b).await["active"],
        true
    );

    // Revocation at A is seen by introspection at B at once (no cache in between).
    revoke(&http, &a_url, &secret, &refresh_b).await;
    assert_eq!(
        introspect(&http, &b_url, &secret, &refresh_b).await["active"],
        false,
        "refresh token revoked at A is inactive at B"
    );
    revoke(&http, &a_url, &secret, &access_b).await;
    assert_eq!(
        introspect(&http, &b_url, &secret, &access_b).await["active"],
        false,
        "access token revoked at A is inactive at B"
    );
    let after = refresh(&http, &b_url, &secret, &refresh_b)
        .await
        .expect("refresh");
    assert!(after.is_invalid_grant(), "revoked at A, refused at B");

    // 100 concurrent refreshes of one token, alternately at A and B.
    let race = login(&http, &a_url, &secret).await.field("refresh_token");
    let barrier = Arc::new(tokio::sync::Barrier::new(100));
    let mut tasks = Vec::new();
    for i in 0..100 {
        let base = if i % 2 == 0 { &a_url } else { &b_url }.clone();
        let (http, secret, race, barrier) =
            (http.clone(), secret.clone(), race.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let answer = refresh(&http, &base, &secret, &race).await;
            (i % 2, answer)
        }));
    }
    let mut winners = Vec::new();
    let mut refused = [0usize; 2];
    for task in tasks {
        let (instance, answer) = task.await.expect("join");
        let answer = answer.expect("every racer gets an answer");
        if answer.status == 200 {
            winners.push((instance, answer.field("refresh_token")));
        } else {
            assert!(
                answer.is_invalid_grant(),
                "a loser gets invalid_grant, not {} {}",
                answer.status,
                answer.body
            );
            refused[instance] += 1;
        }
    }
    eprintln!(
        "refresh race: {} winner(s) (at {:?}), invalid_grant at A {} / at B {}",
        winners.len(),
        winners
            .iter()
            .map(|(i, _)| ["A", "B"][*i])
            .collect::<Vec<_>>(),
        refused[0],
        refused[1]
    );
    assert_eq!(winners.len(), 1, "exactly one concurrent refresh succeeds");
    assert!(
        refused[0] > 0 && refused[1] > 0,
        "both instances took part in the race"
    );
    // RFC 9700 §4.14.2 with no grace: the reuse revoked the family, so the winner's new token
    // is dead too, at either instance.
    let won = &winners[0].1;
    assert_eq!(
        introspect(&http, &b_url, &secret, won).await["active"],
        false,
        "the winner's token belongs to a revoked family"
    );
    for base in [&a_url, &b_url] {
        let r = refresh(&http, base, &secret, won).await.expect("refresh");
        assert!(
            r.is_invalid_grant(),
            "winner's token after reuse: {}",
            r.body
        );
    }
    let reuse = a.audit("refresh.reuse_detected");
    assert_eq!(
        reuse.len(),
        1,
        "one reuse recorded, by the revoker: {reuse:?}"
    );
    let revoked_for_reuse = a
        .audit("refresh.family_revoked")
        .into_iter()
        .filter(|r| r["details"]["reason"] == "reuse_detected")
        .count();
    assert_eq!(revoked_for_reuse, 1, "the family was revoked once");

    // Throttling counts failures at both instances: wrong passwords at A, B, A, then the right
    // one is refused at B and at A.
    for (i, base) in [&a_url, &b_url, &a_url].into_iter().enumerate() {
        let r = password_grant(&http, base, &secret, "carol", &format!("Wrong-Guess-{i}"))
            .await
            .expect("login");
        assert!(r.is_invalid_grant(), "wrong password: {}", r.body);
    }
    // The lock taken by the third failure lasts at least a second (2 s, in whole seconds).
    for base in [&b_url, &a_url] {
        let r = password_grant(&http, base, &secret, "carol", PASSWORD)
            .await
            .expect("login");
        assert!(
            r.is_invalid_grant(),
            "the right password is refused while throttled, at {base}: {} {}",
            r.status,
            r.body
        );
    }
    // Failed logins are audited by a batched writer off the request path (flushed every
    // 20 ms by default), so wait a little for all five rows.
    let count = |rows: &[Value], reason: &str| {
        rows.iter()
            .filter(|r| r["user"] == "carol" && r["details"]["reason"] == reason)
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let failures = loop {
        let rows = a.audit("login.failure");
        if (count(&rows, "wrong_password") >= 3 && count(&rows, "throttled") >= 2)
            || Instant::now() > deadline
        {
            break rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let reasons = |reason: &str| count(&failures, reason);
    eprintln!(
        "throttling: carol's failures wrong_password {} throttled {}",
        reasons("wrong_password"),
        reasons("throttled")
    );
    assert_eq!(reasons("wrong_password"), 3);
    assert_eq!(reasons("throttled"), 2, "both refusals were the throttle");
}

/// Two instances starting at the same moment on an empty database create exactly one signing
/// key. Round 0 races the migrations too; round 1 starts on a migrated schema so that the two
/// key insertions race as closely as they can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_first_start_creates_one_signing_key() {
    let _serial = SERIAL.lock().await;
    let http = http_client();
    for round in 0..2 {
        let db = TestDb::new(Backend::Postgres).await;
        let mut extra = Vec::new();
        if round > 0 {
            run_cli(&base_env(&db.url, 0), &["migrate"], None);
            extra.push(("TESSERA__DATABASE__MIGRATE_ON_START", "false"));
        }
        let mut a = Server::start(&db, &extra);
        let mut b = Server::start(&db, &extra);
        a.wait_ready(&http).await;
        b.wait_ready(&http).await;
        let keys = a.cli_json(&["key", "list", "--json"]);
        let keys = keys.as_array().expect("keys");
        assert_eq!(keys.len(), 1, "round {round}: one signing key: {keys:?}");
        assert_eq!(keys[0]["state"], "active");
        let kid = keys[0]["kid"].as_str().expect("kid");
        for server in [&a, &b] {
            let jwks = get(&http, &server.url("/.well-known/jwks.json")).await.body;
            let kids: Vec<&str> = jwks["keys"]
                .as_array()
                .expect("keys")
                .iter()
                .filter_map(|k| k["kid"].as_str())
                .collect();
            assert_eq!(kids, [kid], "round {round}: the JWKS holds the one key");
        }
        eprintln!("simultaneous start, round {round}: one key {kid}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. kill -9 under a refresh load
// ---------------------------------------------------------------------------------------------

/// How one client chain ended.
#[derive(Debug)]
enum End {
    /// The load was stopped with no request outstanding.
    Stopped,
    /// The connection failed: the process died while (or before) this request was served.
    Transport(String),
    /// An HTTP answer other than a new token.
    Refused(u16, String),
}

/// One client following its own refresh token: every token it received, in order.
#[derive(Debug)]
struct ChainLog {
    tokens: Vec<String>,
    end: End,
    /// When the last request was sent.
    last_sent: Instant,
}

const CHAINS: usize = 20;

/// `kill -9` during sustained refresh rotation by 20 client chains, then a restart on the same
/// database. Every token a client received is in the database (it was committed before the
/// response was sent); each chain's latest token works unless the request that was in flight
/// at the kill had already committed its rotation; no token rotated before the crash works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_refresh_load_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let http = http_client();
    // No background clean-up: rotated tokens stay in the table for the checks below.
    let mut server = Server::start(&db, &[("TESSERA__MAINTENANCE__GC_INTERVAL", "0s")]);
    server.wait_ready(&http).await;
    let secret = server.seed();
    let base = server.base();

    let mut firsts = Vec::new();
    for _ in 0..CHAINS {
        firsts.push(login(&http, &base, &secret).await.field("refresh_token"));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let rotations = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for first in firsts {
        let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
        let (stop, rotations) = (stop.clone(), rotations.clone());
        tasks.push(tokio::spawn(async move {
            let mut tokens = vec![first];
            let mut last_sent = Instant::now();
            let deadline = Instant::now() + Duration::from_secs(30);
            let end = loop {
                if stop.load(Ordering::SeqCst) || Instant::now() > deadline {
                    break End::Stopped;
                }
                let current = tokens.last().expect("token").clone();
                last_sent = Instant::now();
                match refresh(&http, &base, &secret, &current).await {
                    Ok(a) if a.status == 200 => {
                        tokens.push(a.field("refresh_token"));
                        rotations.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(a) => break End::Refused(a.status, a.body.to_string()),
                    Err(e) => break End::Transport(e.to_string()),
                }
            };
            ChainLog {
                tokens,
                end,
                last_sent,
            }
        }));
    }

    // Load for at least 2 s and until 3000 rotations, at most 10 s; then kill -9. (A debug build
    // on a shared 2-core machine manages about 150-300 rotations a second.)
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let elapsed = started.elapsed();
        let done = rotations.load(Ordering::SeqCst);
        if (elapsed >= Duration::from_secs(2) && done >= 3000) || elapsed >= Duration::from_secs(10)
        {
            break;
        }
    }
    server.kill9();
    // The process is reaped: nothing sent after this can have been served.
    let dead_at = Instant::now();
    let load_time = started.elapsed();
    // Stopped only after the kill, so that requests are in flight when the process dies.
    stop.store(true, Ordering::SeqCst);
    let mut chains = Vec::new();
    for task in tasks {
        chains.push(task.await.expect("join"));
    }
    let rotated_under_load = rotations.load(Ordering::SeqCst);
    for chain in &chains {
        if let End::Refused(status, body) = &chain.end {
            panic!("a refresh was refused under load before the crash: {status} {body}");
        }
    }
    let cut_off: Vec<&str> = chains
        .iter()
        .filter_map(|c| match &c.end {
            End::Transport(e) => Some(e.as_str()),
            _ => None,
        })
        .collect();
    eprintln!(
        "crash: {rotated_under_load} rotations in {load_time:.1?} by {CHAINS} chains \
         ({:.0}/s); {} chains cut off by the kill (e.g. {:?})",
        rotated_under_load as f64 / load_time.as_secs_f64(),
        cut_off.len(),
        cut_off.first()
    );
    assert!(
        rotated_under_load >= 500,
        "sustained load: {rotated_under_load}"
    );

    server.restart();
    server.wait_ready(&http).await;

    // Straight from the database: every token any client received was committed, and every
    // token superseded by a later response was marked rotated.
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let hashes = |tokens: &mut dyn Iterator<Item = &String>| -> Vec<Vec<u8>> {
        tokens.map(|t| tessera::crypto::tokens::hash(t)).collect()
    };
    let received = hashes(&mut chains.iter().flat_map(|c| c.tokens.iter()));
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE token_hash = ANY($1)")
            .bind(&received)
            .fetch_one(&pool)
            .await
            .expect("count");
    let superseded = hashes(
        &mut chains
            .iter()
            .flat_map(|c| c.tokens[..c.tokens.len() - 1].iter()),
    );
    let marked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE token_hash = ANY($1) AND rotated_at IS NOT NULL",
    )
    .bind(&superseded)
    .fetch_one(&pool)
    .await
    .expect("count");

    // At most one live token per family, and one `token.refresh` audit row per rotation
    // (written in the rotation's transaction, so the crash cannot split them).
    let doubled: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT family_id FROM refresh_tokens WHERE rotated_at IS NULL \
         GROUP BY family_id HAVING count(*) > 1) AS d",
    )
    .fetch_one(&pool)
    .await
    .expect("count");
    assert_eq!(doubled, 0, "a family has two live tokens");
    let rotated_rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM refresh_tokens WHERE rotated_at IS NOT NULL")
            .fetch_one(&pool)
            .await
            .expect("count");
    let audited: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'token.refresh'")
            .fetch_one(&pool)
            .await
            .expect("count");
    assert_eq!(
        rotated_rows, audited,
        "every committed rotation has its audit row"
    );

    // Over HTTP, on the restarted process: each chain's latest token.
    let mut lost = Vec::new();
    let mut survived = 0;
    let mut in_flight_committed = 0;
    let mut successors = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        let latest = chain.tokens.last().expect("token");
        let rotated_at: Option<i64> =
            sqlx::query_scalar("SELECT rotated_at FROM refresh_tokens WHERE token_hash = $1")
                .bind(tessera::crypto::tokens::hash(latest))
                .fetch_one(&pool)
                .await
                .expect("latest token row");
        if rotated_at.is_some() {
            // Only the request in flight at the kill can have rotated it: the rotation
            // committed, the response never arrived. That is not a response the client
            // received, so nothing it was given is lost; it is the lost-response case of
            // rotation. Its successor must be the family's one live token, never delivered.
            let live: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT n.token_hash FROM refresh_tokens o JOIN refresh_tokens n \
                 ON n.family_id = o.family_id WHERE o.token_hash = $1 AND n.rotated_at IS NULL",
            )
            .bind(tessera::crypto::tokens::hash(latest))
            .fetch_all(&pool)
            .await
            .expect("live successor");
            let in_flight = matches!(chain.end, End::Transport(_)) && chain.last_sent < dead_at;
            if in_flight && live.len() == 1 && !received.contains(&live[0]) {
                in_flight_committed += 1;
            } else {
                lost.push(format!(
                    "chain {i}: latest token rotated, but no request of it was in flight \
                     ({:?}) or its successor is not the one undelivered live token ({})",
                    chain.end,
                    live.len()
                ));
            }
            continue;
        }
        let r = refresh(&http, &base, &secret, latest)
            .await
            .expect("refresh after restart");
        if r.status == 200 {
            survived += 1;
            successors.push((i, r.field("refresh_token")));
        } else {
            lost.push(format!("chain {i}: {} {}", r.status, r.body));
        }
    }

    // A sample of tokens rotated before the crash, up to 10 per chain, spread over the chain:
    // each must be refused. The first per chain is a reuse and revokes the family.
    let mut replayed = 0;
    let mut replay_worked = Vec::new();
    for (i, chain) in chains.iter().enumerate() {
        let old = &chain.tokens[..chain.tokens.len() - 1];
        let step = (old.len() / 10).max(1);
        for token in old.iter().step_by(step).take(10) {
            let r = refresh(&http, &base, &secret, token).await.expect("replay");
            replayed += 1;
            if !r.is_invalid_grant() {
                replay_worked.push(format!("chain {i}: {} {}", r.status, r.body));
            }
        }
    }
    // The reuse revoked each family: the tokens just issued after the restart are dead too.
    for (i, token) in &successors {
        let r = refresh(&http, &base, &secret, token)
            .await
            .expect("refresh");
        assert!(
            r.is_invalid_grant(),
            "chain {i}: a replayed rotated token revokes its family: {}",
            r.body
        );
    }
    eprintln!(
        "after restart: {} received tokens checked in the database ({stored} stored), \
         {} superseded ({marked} marked rotated), {rotated_rows} rotations committed and \
         audited; latest tokens: {survived} work, \
         {in_flight_committed} rotated by the request in flight at the kill; \
         {replayed} rotated tokens replayed, {} accepted; lost = {}",
        received.len(),
        superseded.len(),
        replay_worked.len(),
        lost.len()
    );
    assert_eq!(
        stored as usize,
        received.len(),
        "every token a client received was committed"
    );
    assert_eq!(
        marked as usize,
        superseded.len(),
        "every superseded token is marked rotated"
    );
    assert!(lost.is_empty(), "tokens lost in the crash: {lost:?}");
    assert_eq!(
        rotated_rows as usize,
        superseded.len() + in_flight_committed,
        "committed rotations are the answered ones plus those in flight at the kill"
    );
    assert!(
        replay_worked.is_empty(),
        "rotated tokens worked again: {replay_worked:?}"
    );
    assert_eq!(survived + in_flight_committed, CHAINS);
}

// ---------------------------------------------------------------------------------------------
// 3. Database outage, simulated with a TCP proxy
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Forward connections to Postgres.
    Up,
    /// Cut every proxied connection and refuse new ones (the port is closed): Postgres down.
    Refuse,
    /// Cut every proxied connection; accept new ones and never answer: a network partition.
    Stall,
}

/// A TCP proxy in front of the shared Postgres, so that one test can take "its" database away
/// without stopping the server every other test uses.
struct Proxy {
    port: u16,
    mode: watch::Sender<Mode>,
    traps: Traps,
    task: tokio::task::JoinHandle<()>,
}

/// One trap per direction of every proxied connection.
#[derive(Clone, Default)]
struct Traps {
    /// Drops the next reply from Postgres holding some bytes and cuts its connection: an
    /// answer lost between the database and Tessera.
    reply: Trap,
    /// Forwards the next request to Postgres holding some bytes, then cuts its connection: a
    /// statement Postgres goes on running for a client that is gone.
    request: Trap,
    /// Holds back the next reply from Postgres holding some bytes, and every later one on its
    /// connection, with both sockets left open: a network gone silent, neither side told.
    freeze: Trap,
}

/// Cuts the connection that next carries some bytes one way. One-shot.
#[derive(Clone, Default)]
struct Trap {
    needle: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    sprung: Arc<AtomicUsize>,
}

impl Trap {
    fn arm(&self, needle: &[u8]) {
        *self.needle.lock().expect("trap") = Some(needle.to_vec());
    }

    /// Whether `chunk` springs the trap; it is disarmed if so.
    fn springs_on(&self, chunk: &[u8]) -> bool {
        let mut needle = self.needle.lock().expect("trap");
        let hit = needle
            .as_deref()
            .is_some_and(|n| chunk.windows(n.len()).any(|w| w == n));
        if hit {
            *needle = None;
            self.sprung.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }

    fn sprung(&self) -> usize {
        self.sprung.load(Ordering::SeqCst)
    }
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        let (mode, rx) = watch::channel(Mode::Up);
        let traps = Traps::default();
        let task = tokio::spawn(proxy_loop(listener, port, upstream, rx, traps.clone()));
        Proxy {
            port,
            mode,
            traps,
            task,
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn proxy_loop(
    listener: TcpListener,
    port: u16,
    upstream: String,
    mut rx: watch::Receiver<Mode>,
    traps: Traps,
) {
    let mut listener = Some(listener);
    let mut stalled: Vec<TcpStream> = Vec::new();
    loop {
        let mode = *rx.borrow_and_update();
        if mode != Mode::Stall {
            stalled.clear();
        }
        if mode == Mode::Refuse {
            listener = None;
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        }
        if listener.is_none() {
            // Reopen the same port (SO_REUSEADDR is set by tokio on Unix).
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match TcpListener::bind(("127.0.0.1", port)).await {
                    Ok(l) => {
                        listener = Some(l);
                        break;
                    }
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("proxy: rebinding {port}: {e}");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("proxy cannot reopen port {port}: {e}"),
                }
            }
        }
        let Some(l) = listener.as_ref() else {
            continue;
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            accepted = l.accept() => {
                if let Ok((socket, _)) = accepted {
                    if mode == Mode::Up {
                        tokio::spawn(pipe(socket, upstream.clone(), rx.clone(), traps.clone()));
                    } else {
                        stalled.push(socket);
                    }
                }
            }
        }
    }
}

/// Forwards one connection until either side closes, the proxy leaves `Up` or a trap springs.
async fn pipe(client: TcpStream, upstream: String, mut rx: watch::Receiver<Mode>, traps: Traps) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(server) = TcpStream::connect(upstream.as_str()).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if server_write.write_all(&buf[..n]).await.is_err()
                || traps.request.springs_on(&buf[..n])
            {
                return;
            }
        }
    };
    let replies = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if traps.freeze.springs_on(&buf[..n]) {
                std::future::pending::<()>().await;
            }
            if traps.reply.springs_on(&buf[..n]) || client_write.write_all(&buf[..n]).await.is_err()
            {
                return;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = replies => {}
        _ = rx.wait_for(|m| *m != Mode::Up) => {}
    }
    // Dropping both sockets cuts the connection on both sides.
}

/// A server whose Postgres connections go through a [`Proxy`] in clear, so that the proxy's
/// traps can see what the messages hold; alice has logged in once (`first` is her refresh
/// token).
struct Trapped {
    // Dropped in this order: the server before its database.
    server: Server,
    proxy: Proxy,
    db: TestDb,
    http: reqwest::Client,
    secret: String,
    base: String,
    first: String,
}

async fn trapped(extra: &[(&str, &str)]) -> Trapped {
    let db = TestDb::new(Backend::Postgres).await;
    let upstream = host_port(&db.url);
    let proxy = Proxy::start(upstream.clone()).await;
    let proxied_url = format!(
        "{}?sslmode=disable",
        db.url
            .replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1)
    );
    let http = http_client();
    let mut server = Server::start_on(&db.path(), &proxied_url, extra);
    server.wait_ready(&http).await;
    let secret = server.seed();
    let base = server.base();
    let first = login(&http, &base, &secret).await.field("refresh_token");
    Trapped {
        server,
        proxy,
        db,
        http,
        secret,
        base,
        first,
    }
}

/// A refresh rotation commits, but its answer never reaches Tessera: the proxy cuts the
/// connection and drops the first reply that names the user, which is the rotation's. Tessera
/// finds the successor that only this request could have inserted and answers 200 with it,
/// instead of a 503 whose retry would be refused as reuse. A rotation cut before its commit
/// (a narrower scope takes the multi-statement path, whose first reply after the claim names
/// the user) is done again: 200, one audited rotation, and the token it answers works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_whose_answer_is_lost_after_commit_is_still_delivered() {
    let _serial = SERIAL.lock().await;
    let Trapped {
        db: _db,
        proxy,
        server,
        http,
        secret,
        base,
        first,
    } = trapped(&[]).await;

    proxy.traps.reply.arm(b"alice");
    let a = refresh(&http, &base, &secret, &first)
        .await
        .expect("refresh");
    assert_eq!(
        proxy.traps.reply.sprung(),
        1,
        "the rotation's reply was not cut"
    );
    assert_eq!(
        a.status,
        200,
        "a committed rotation whose answer was lost: {} {}\n{}",
        a.status,
        a.body,
        server.logs()
    );
    assert!(
        server.logs().contains(r#""how":"found""#),
        "{}",
        server.logs()
    );
    let second = a.field("refresh_token");
    assert_eq!(server.audit("token.refresh").len(), 1);

    proxy.traps.reply.arm(b"alice");
    let narrowed = refresh_narrowed(&http, &base, &secret, &second)
        .await
        .expect("refresh");
    assert_eq!(
        proxy.traps.reply.sprung(),
        2,
        "the narrowing rotation's reply was not cut"
    );
    assert_eq!(
        narrowed.status,
        200,
        "a rotation cut before its commit is done again: {} {}\n{}",
        narrowed.status,
        narrowed.body,
        server.logs()
    );
    assert!(
        server.logs().contains(r#""how":"redone""#),
        "{}",
        server.logs()
    );
    assert_eq!(
        server.audit("token.refresh").len(),
        2,
        "one audited rotation per committed one"
    );
    let third = refresh(&http, &base, &secret, &narrowed.field("refresh_token"))
        .await
        .expect("refresh");
    assert_eq!(
        third.status, 200,
        "the redone rotation's token: {}",
        third.body
    );
    // Last, as presenting a rotated token revokes its family.
    let reused = refresh(&http, &base, &secret, &first)
        .await
        .expect("refresh");
    assert!(
        reused.is_invalid_grant(),
        "the first token was rotated: {}",
        reused.body
    );
    assert_eq!(server.audit("refresh.reuse_detected").len(), 1);
}

/// A rotation statement still running when its connection is cut (here, waiting for a row
/// lock) commits after Tessera has seen the cut. Tessera waits for it before looking for the
/// successor, so the client gets the rotation that committed rather than a 503 whose retry
/// would be taken for reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_that_commits_after_its_connection_is_cut_is_still_delivered() {
    let _serial = SERIAL.lock().await;
    let Trapped {
        db,
        proxy,
        server,
        http,
        secret,
        base,
        first,
    } = trapped(&[]).await;
    let hash = tessera::crypto::tokens::hash(&first);

    // Straight to Postgres: hold the presented token's row so that the rotation waits.
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    let mut holder = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE")
        .bind(&hash)
        .execute(&mut *holder)
        .await
        .expect("lock the token");

    // The batched rotation carries the presented token's hash in hex.
    proxy.traps.request.arm(hex::encode(&hash).as_bytes());
    let rotation = tokio::spawn({
        let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
        async move { refresh(&http, &base, &secret, &first).await }
    });
    // Both the cut-off rotation and Tessera's look for its outcome queue for the row.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .expect("pg_stat_activity");
        if waiting == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "expected the rotation and the look for its outcome to wait for the row lock; \
             {waiting} waiting, trap sprung {} time(s)\n{}",
            proxy.traps.request.sprung(),
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        proxy.traps.request.sprung(),
        1,
        "the rotation's connection was not cut"
    );
    holder.commit().await.expect("release the token");

    let a = rotation.await.expect("task").expect("refresh");
    assert_eq!(
        a.status,
        200,
        "a rotation that committed after its connection was cut: {} {}\n{}",
        a.status,
        a.body,
        server.logs()
    );
    assert!(server.logs().contains("recovered"), "{}", server.logs());
    let next = refresh(&http, &base, &secret, &a.field("refresh_token"))
        .await
        .expect("refresh");
    assert_eq!(next.status, 200, "the delivered token works: {}", next.body);
    assert_eq!(server.audit("token.refresh").len(), 2);
}

/// A rotation's connection goes silent in the middle of its transaction (no FIN, no RST), with
/// the presented token's row locked. Postgres ends the session after
/// `database.idle_in_transaction_timeout`, so the client's retry with the same token is
/// answered instead of waiting behind the lock until TCP gives up; the request on the silent
/// connection is answered 503 at `server.request_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_whose_network_goes_silent_releases_its_locks() {
    let _serial = SERIAL.lock().await;
    let Trapped {
        db: _db,
        proxy,
        server,
        http,
        secret,
        base,
        first: token,
    } = trapped(&[
        ("TESSERA__DATABASE__IDLE_IN_TRANSACTION_TIMEOUT", "1s"),
        ("TESSERA__SERVER__REQUEST_TIMEOUT", "3s"),
    ])
    .await;

    // The multi-statement path (a narrower scope): the token is claimed, then the reply that
    // names the user never comes, and the transaction stays open on the database's side.
    proxy.traps.freeze.arm(b"alice");
    let frozen = tokio::spawn({
        let (http, base, secret, token) =
            (http.clone(), base.clone(), secret.clone(), token.clone());
        async move { refresh_narrowed(&http, &base, &secret, &token).await }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.traps.freeze.sprung() == 0 {
        assert!(
            Instant::now() < deadline,
            "the rotation's reply was not held back"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let asked = Instant::now();
    let retry = refresh(&http, &base, &secret, &token)
        .await
        .expect("the retry is answered within the client's timeout");
    assert_eq!(
        retry.status,
        200,
        "the silent transaction never committed, so the token is still good: {}\n{}",
        retry.body,
        server.logs()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "answered after {:?}",
        asked.elapsed()
    );
    assert_eq!(server.audit("token.refresh").len(), 1);

    // The request on the silent connection itself is answered at `server.request_timeout`.
    let cut_short = tokio::time::timeout(Duration::from_secs(10), frozen)
        .await
        .expect("the frozen request is answered within the request timeout")
        .expect("task")
        .expect("an answer");
    assert!(
        cut_short.is_unavailable(),
        "{} {}",
        cut_short.status,
        cut_short.body
    );
    assert!(
        server.logs().contains("request timed out"),
        "{}",
        server.logs()
    );
}

/// `host:port` of a postgres:// URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").expect("scheme").1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().expect("host").to_owned()
}

/// One request of the background load during the outage test.
#[derive(Debug)]
struct Sample {
    what: &'static str,
    /// The refresh token presented, for a refresh.
    presented: Option<String>,
    start: Duration,
    end: Duration,
    outcome: Result<Answer, String>,
}

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
/// Acquire timeout plus 2 s: a bound on any answer during the outage, not a benchmark.
const OUTAGE_BOUND: Duration = Duration::from_secs(ACQUIRE_TIMEOUT.as_secs() + 2);

/// The database goes away under load (connections cut, then refused, then stalled) and comes
/// back. Meanwhile the token endpoint answers 503 temporarily_unavailable with Retry-After
/// within the bound, /readyz is 503, /healthz and the JWKS answer 200 from memory; afterwards
/// Tessera recovers by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_answers_503_and_recovers() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let upstream = host_port(&db.url);
    let proxy = Proxy::start(upstream.clone()).await;
    let proxied_url = db
        .url
        .replacen(&upstream, &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(proxied_url, db.url);
    let http = http_client();
    let mut server = Server::start_on(
        &db.path(),
        &proxied_url,
        &[(
            "TESSERA__DATABASE__ACQUIRE_TIMEOUT",
            &format!("{}s", ACQUIRE_TIMEOUT.as_secs()),
        )],
    );
    server.wait_ready(&http).await;
    let secret = server.seed();
    let base = server.base();
    let spare = login(&http, &base, &secret).await;

    // Background load: 4 refresh chains and 2 login loops, each pausing 20 ms between requests.
    let clock = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (http, base, secret, stop) = (http.clone(), base.clone(), secret.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut token = if i < 4 {
                Some(login(&http, &base, &secret).await.field("refresh_token"))
            } else {
                None
            };
            // Every refresh token this chain was given.
            let mut received: Vec<String> = token.iter().cloned().collect();
            let deadline = Instant::now() + Duration::from_secs(40);
            while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                let start = clock.elapsed();
                let (what, outcome) = match &token {
                    Some(t) => ("refresh", refresh(&http, &base, &secret, t).await),
                    None => (
                        "password",
                        password_grant(&http, &base, &secret, "alice", PASSWORD).await,
                    ),
                };
                let outcome = outcome.map_err(|e| e.to_string());
                let presented = token.clone();
                if let (Some(t), Ok(a)) = (token.as_mut(), &outcome) {
                    if a.status == 200 {
                        *t = a.field("refresh_token");
                        received.push(t.clone());
                    } else if a.is_invalid_grant() {
                        // Only acceptable right after a 503 whose rotation committed anyway
                        // (checked below); carry on with a fresh login.
                        if let Ok(fresh) =
                            password_grant(&http, &base, &secret, "alice", PASSWORD).await
                            && fresh.status == 200
                        {
                            *t = fresh.field("refresh_token");
                            received.push(t.clone());
                        }
                    }
                }
                samples.push(Sample {
                    what,
                    presented,
                    start,
                    end: clock.elapsed(),
                    outcome,
                });
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (samples, received)
        }));
    }

    // Probes of every endpoint while the database is away, all at once.
    let spare_refresh = spare.field("refresh_token");
    let spare_access = spare.field("access_token");
    let probe = |label: &'static str| {
        let (http, base, secret) = (&http, &base, secret.as_str());
        let (spare_refresh, spare_access) = (&spare_refresh, &spare_access);
        async move {
            let form = |what: &'static str,
                        path: &'static str,
                        form: Vec<(&'static str, String)>| {
                let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let req = post(http, base, path, (CLIENT, secret), &form);
                Box::pin(async move { (what, send(req).await.expect(what)) })
                    as futures::future::BoxFuture<'_, (&'static str, Answer)>
            };
            let mut calls = vec![
                form(
                    "password grant",
                    "/oauth/token",
                    vec![
                        ("grant_type", "password".into()),
                        ("username", "alice".into()),
                        ("password", PASSWORD.into()),
                    ],
                ),
                form(
                    "refresh grant",
                    "/oauth/token",
                    vec![
                        ("grant_type", "refresh_token".into()),
                        ("refresh_token", spare_refresh.clone()),
                    ],
                ),
                form(
                    "client_credentials grant",
                    "/oauth/token",
                    vec![("grant_type", "client_credentials".into())],
                ),
                form(
                    "introspection",
                    "/oauth/introspect",
                    vec![("token", spare_access.clone())],
                ),
                form(
                    "revocation",
                    "/oauth/revoke",
                    vec![("token", spare_access.clone())],
                ),
            ];
            for path in [
                "/readyz",
                "/healthz",
                "/.well-known/jwks.json",
                "/.well-known/oauth-authorization-server",
            ] {
                let req = http.get(format!("{base}{path}"));
                calls.push(Box::pin(
                    async move { (path, send(req).await.expect(path)) },
                ));
            }
            let answers = futures::future::join_all(calls).await;
            for (what, a) in &answers {
                eprintln!(
                    "outage ({label}): {what:<40} {} {:<24} in {:>7.1} ms",
                    a.status,
                    a.error(),
                    a.elapsed.as_secs_f64() * 1000.0
                );
            }
            answers
        }
    };

    tokio::time::sleep(Duration::from_millis(1000)).await;
    let down_at = clock.elapsed();
    proxy.set(Mode::Refuse);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut probes = probe("refused").await;
    proxy.set(Mode::Stall);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    probes.extend(probe("stalled").await);
    let up_at = clock.elapsed();
    proxy.set(Mode::Up);

    // Recovery, with no restart: /readyz and a login both succeed again, within 15 s.
    let (mut ready, mut token_ok) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(15);
    while (ready.is_none() || token_ok.is_none()) && Instant::now() < deadline {
        if ready.is_none() && get(&http, &server.url("/readyz")).await.status == 200 {
            ready = Some(clock.elapsed() - up_at);
        }
        if token_ok.is_none()
            && password_grant(&http, &base, &secret, "alice", PASSWORD)
                .await
                .is_ok_and(|a| a.status == 200)
        {
            token_ok = Some(clock.elapsed() - up_at);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_at = clock.elapsed();
    eprintln!("outage: recovered, /readyz 200 after {ready:.1?}, token 200 after {token_ok:.1?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::SeqCst);
    let mut chains = Vec::new();
    for task in tasks {
        chains.push(task.await.expect("join"));
    }

    // The probes.
    for (what, a) in &probes {
        assert!(
            a.elapsed <= OUTAGE_BOUND,
            "{what} took {:?} during the outage",
            a.elapsed
        );
        assert_ne!(a.status, 500, "{what}: 500 during the outage: {}", a.body);
        match *what {
            "/healthz" | "/.well-known/oauth-authorization-server" => {
                assert_eq!(a.status, 200, "{what}")
            }
            "/.well-known/jwks.json" => {
                assert_eq!(a.status, 200);
                assert!(!a.body["keys"].as_array().expect("keys").is_empty());
            }
            "/readyz" => assert_eq!(a.status, 503, "/readyz during the outage"),
            _ => assert!(
                a.is_unavailable(),
                "{what}: 503 temporarily_unavailable with Retry-After, got {} {} (retry-after {})",
                a.status,
                a.body,
                a.retry_after
            ),
        }
    }

    // The background load.
    let mut counts: BTreeMap<(&str, &str, String), usize> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut slowest_in_outage = Duration::ZERO;
    let mut ambiguous = 0;
    let mut total = 0;
    let mut ambiguous_tokens = Vec::new();
    for (samples, received) in &chains {
        let mut previous_unavailable = false;
        for s in samples {
            total += 1;
            let phase = if s.end < down_at {
                "before"
            } else if s.start >= recovered_at {
                "after"
            } else {
                "outage"
            };
            let label = match &s.outcome {
                Ok(a) => format!("{} {}", a.status, a.error()),
                Err(e) => format!("transport error {e}"),
            };
            *counts.entry((phase, s.what, label.clone())).or_default() += 1;
            let Ok(a) = &s.outcome else {
                problems.push(format!("{} at {:?}: {label}", s.what, s.start));
                continue;
            };
            if phase == "outage" {
                slowest_in_outage = slowest_in_outage.max(a.elapsed);
            }
            let fine = match phase {
                "outage" => a.status == 200 || a.is_unavailable(),
                _ => a.status == 200,
            };
            if a.is_invalid_grant() && s.what == "refresh" && previous_unavailable {
                // Acceptable only as a rotation whose COMMIT reached Postgres just as the
                // connection was cut: the client saw 503 and retried a token that was in fact
                // rotated (checked in the database below).
                ambiguous += 1;
                ambiguous_tokens.push((s.presented.clone().expect("presented"), received));
            } else if !fine {
                problems.push(format!(
                    "{} in phase {phase} at {:?}: {label} {} in {:?}",
                    s.what, s.start, a.body, a.elapsed
                ));
            }
            if a.elapsed > OUTAGE_BOUND {
                problems.push(format!("{} took {:?}", s.what, a.elapsed));
            }
            previous_unavailable = a.status == 503;
        }
    }
    for ((phase, what, label), n) in &counts {
        eprintln!("outage load: {phase:<6} {what:<8} {label:<30} x{n}");
    }
    // Each such token was rotated, and its family holds exactly one token the client never
    // received: the successor whose response was lost with the connection.
    let pool = sqlx::PgPool::connect(&db.url).await.expect("pool");
    for (presented, received) in &ambiguous_tokens {
        let family: Vec<(Vec<u8>, Option<i64>)> = sqlx::query_as(
            "SELECT n.token_hash, o.rotated_at FROM refresh_tokens o JOIN refresh_tokens n \
             ON n.family_id = o.family_id WHERE o.token_hash = $1",
        )
        .bind(tessera::crypto::tokens::hash(presented))
        .fetch_all(&pool)
        .await
        .expect("family");
        let given: Vec<Vec<u8>> = received
            .iter()
            .map(|t| tessera::crypto::tokens::hash(t))
            .collect();
        let undelivered = family.iter().filter(|(h, _)| !given.contains(h)).count();
        assert!(
            family.first().is_some_and(|(_, rotated)| rotated.is_some()) && undelivered == 1,
            "a refresh refused after a 503 was not a committed-but-unanswered rotation \
             ({} tokens in the family, {undelivered} never delivered)",
            family.len()
        );
    }
    eprintln!(
        "outage load: {} requests, slowest during the outage {slowest_in_outage:.0?}, \
         {ambiguous} refresh(es) refused after an ambiguous commit",
        total
    );
    assert!(
        ready.is_some() && token_ok.is_some(),
        "Tessera did not recover within 15 s: {}",
        server.logs()
    );
    assert!(
        problems.is_empty(),
        "unexpected answers under the outage: {problems:#?}\n{}",
        server.logs()
    );
    assert!(
        ambiguous <= 2,
        "too many refresh chains broken by the outage: {ambiguous}"
    );
    assert!(
        counts
            .keys()
            .any(|(p, _, l)| *p == "outage" && l.starts_with("503")),
        "the load saw the outage"
    );
    assert!(
        counts
            .keys()
            .any(|(p, _, l)| *p == "after" && l.starts_with("200")),
        "the load went on after recovery"
    );
}

// ---------------------------------------------------------------------------------------------
// 6. Timing
// ---------------------------------------------------------------------------------------------

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Mean of the middle 80%.
fn trimmed_mean(sorted: &[f64]) -> f64 {
    let cut = sorted.len() / 10;
    let kept = &sorted[cut..sorted.len() - cut];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// Mann-Whitney U as a probability: how often a sample of `a` is slower than one of `b`
/// (ties count half). 0.5 means the two are indistinguishable by rank.
fn prob_slower(a: &[f64], b: &[f64]) -> f64 {
    let mut wins = 0.0;
    for x in a {
        for y in b {
            wins += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    wins / (a.len() * b.len()) as f64
}

/// Latencies in milliseconds of two kinds of request, interleaved ABBA so that drift on a
/// shared machine falls on both alike; a warm-up is discarded.
async fn measure<F, Fut>(rounds: usize, mut request: F) -> (Vec<f64>, Vec<f64>)
where
    F: FnMut(bool, usize) -> Fut,
    Fut: std::future::Future<Output = Answer>,
{
    let warm_up = 20;
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for i in 0..rounds + warm_up {
        let order = if i % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for kind in order {
            let started = Instant::now();
            let _answer = request(kind, i).await;
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            if i >= warm_up {
                if kind { &mut first } else { &mut second }.push(ms);
            }
        }
    }
    first.sort_by(f64::total_cmp);
    second.sort_by(f64::total_cmp);
    (first, second)
}

/// Compares two latency samples; `rel` and `abs_ms` bound the difference of the medians and
/// of the trimmed means (whichever bound is larger).
fn assert_indistinguishable(
    label: &str,
    a: (&str, &[f64]),
    b: (&str, &[f64]),
    rel: f64,
    abs_ms: f64,
) {
    let (ma, mb) = (median(a.1), median(b.1));
    let (ta, tb) = (trimmed_mean(a.1), trimmed_mean(b.1));
    let p = prob_slower(a.1, b.1);
    eprintln!(
        "timing, {label}: {} n={} median {ma:.2} ms trimmed mean {ta:.2} ms | {} n={} median \
         {mb:.2} ms trimmed mean {tb:.2} ms | P({} slower) = {p:.2}",
        a.0,
        a.1.len(),
        b.0,
        b.1.len(),
        a.0
    );
    let allowed = |x: f64, y: f64| (rel * (x + y) / 2.0).max(abs_ms);
    assert!(
        (ma - mb).abs() <= allowed(ma, mb),
        "{label}: medians differ: {ma:.2} ms vs {mb:.2} ms"
    );
    assert!(
        (ta - tb).abs() <= allowed(ta, tb),
        "{label}: trimmed means differ: {ta:.2} ms vs {tb:.2} ms"
    );
    // A real leak (a skipped hash or lookup) separates the two almost completely.
    assert!(
        (0.2..=0.8).contains(&p),
        "{label}: one kind is consistently slower: P = {p:.2}"
    );
}

/// Unknown user and wrong password cost the same: both hash (the unknown user against the
/// dummy hash), count an attempt and write an audit row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_and_wrong_password_take_the_same_time() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let http = http_client();
    // Throttling would cut the hashing short for the known account; keep it out of the way.
    let mut server = Server::start(&db, &[("TESSERA__SECURITY__MAX_FAILURES", "1000000")]);
    server.wait_ready(&http).await;
    let secret = server.seed();
    let base = server.base();
    let nonce = std::process::id();
    let (unknown, wrong) = measure(200, |unknown, i| {
        let (http, base, secret) = (http.clone(), base.clone(), secret.clone());
        async move {
            let user = if unknown {
                format!("nobody-{nonce}-{i}")
            } else {
                "alice".to_owned()
            };
            let a = password_grant(&http, &base, &secret, &user, &format!("Wrong-Guess-{i}"))
                .await
                .expect("login");
            assert!(a.is_invalid_grant(), "{user}: {} {}", a.status, a.body);
            a
        }
    })
    .await;
    assert_indistinguishable(
        "password grant",
        ("unknown user", &unknown),
        ("wrong password", &wrong),
        0.25,
        5.0,
    );
}

/// A wrong secret for a real client and any secret for an unknown client cost the same.
/// Both kinds cycle over ten client ids, so that both meet the audit's per-id folding alike: the
/// first failure of an id in a second is written (and waited for), the rest are folded in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_client_and_wrong_secret_take_the_same_time() {
    let _serial = SERIAL.lock().await;
    let db = TestDb::new(Backend::Postgres).await;
    let http = http_client();
    let mut server = Server::start(&db, &[]);
    server.wait_ready(&http).await;
    server.seed();
    for n in 0..10 {
        server.cli(
            &[
                "client",
                "add",
                &format!("{CLIENT}-{n}"),
                "--grant",
                "client_credentials",
            ],
            None,
        );
    }
    let base = server.base();
    let (unknown, wrong) = measure(300, |unknown, i| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let id = if unknown {
                format!("no-such-client-{}", i % 10)
            } else {
                format!("{CLIENT}-{}", i % 10)
            };
            let presented = format!("tsc_wrong-secret-{i:08}-abcdefghijklmnopqrstuvwxyz");
            let a = send(post(
                &http,
                &base,
                "/oauth/token",
                (&id, &presented),
                &[("grant_type", "client_credentials")],
            ))
            .await
            .expect("token");
            assert_eq!(a.status, 401, "{id}: {}", a.body);
            assert_eq!(a.error(), "invalid_client");
            a
        }
    })
    .await;
    assert_indistinguishable(
        "client authentication",
        ("unknown client", &unknown),
        ("wrong secret", &wrong),
        0.30,
        1.0,
    );
}
