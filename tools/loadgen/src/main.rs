//! tessera-loadgen: the load generator behind `scripts/bench`, in three modes: `run` (a
//! scenario over keep-alive connections), `argon2` (verify rates) and `ready` (time to the first
//! `/readyz` 200); `tessera-loadgen help MODE` lists each mode's options. Each prints JSON.
//!
//! Traffic goes only to loopback addresses (anything else is refused), and every loop is bounded
//! by the duration or a timeout.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::Barrier;

/// Longest any single request may take before it counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the per-connection setup (connect, first login) may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

fn die(msg: &str) -> ! {
    eprintln!("tessera-loadgen: {msg}");
    std::process::exit(2)
}

#[derive(Parser)]
#[command(
    name = "tessera-loadgen",
    about = "Keep-alive HTTP/1.1 load generator for Tessera's benchmark scenarios"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Opens `--connections` keep-alive HTTP/1.1 connections, one virtual client each, runs the
    /// scenario for `--duration` and prints one JSON line with the results.
    Run(RunArgs),
    /// Single-thread argon2id verify rate as the server once verified (PHC parse,
    /// `verify_password`, which allocates the memory per call), then with one buffer reused
    /// across calls, then that on `--threads` threads at once.
    Argon2(Argon2Args),
    /// Polls GET /readyz every 2 ms until it answers 200; prints the Unix time in nanoseconds.
    Ready(ReadyArgs),
}

#[derive(Args)]
struct RunArgs {
    /// The server, IP:PORT on loopback.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = loopback)]
    addr: SocketAddr,
    #[arg(long, value_enum, default_value_t = Scenario::Ceiling)]
    scenario: Scenario,
    /// `10s`, `500ms`, `2m`, or a bare number of seconds.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Virtual clients, each on a connection of its own (1 to 5000).
    #[arg(long, default_value_t = 50)]
    connections: usize,
    /// tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// ID:SECRET of the gateway client (password and refresh_token grants).
    #[arg(long, value_name = "ID:SECRET", default_value = "")]
    gateway: String,
    /// ID:SECRET of the client_credentials client.
    #[arg(long, value_name = "ID:SECRET", default_value = "")]
    cc: String,
    /// ID:SECRET of the resource server that introspects.
    #[arg(long, value_name = "ID:SECRET", default_value = "")]
    rs: String,
    /// Users `<user-prefix>0` .. to log in as, round robin.
    #[arg(long, default_value_t = 1000)]
    users: u64,
    #[arg(long, default_value = "bench")]
    user_prefix: String,
    /// The users' password.
    #[arg(long, default_value = "")]
    password: String,
    #[arg(long, default_value = "read")]
    scope: String,
}

#[derive(Args)]
struct Argon2Args {
    /// How long each measurement runs.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    seconds: Duration,
    /// Memory cost in KiB.
    #[arg(long, default_value_t = 19456)]
    m: u32,
    /// Iterations.
    #[arg(long, default_value_t = 2)]
    t: u32,
    /// Lanes.
    #[arg(long, default_value_t = 1)]
    p: u32,
    /// Also measure with one buffer reused across calls (and on every thread at once).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    reuse_memory: bool,
    /// Threads of the parallel measurement; one per core by default.
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args)]
struct ReadyArgs {
    /// The server, IP:PORT on loopback.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = loopback)]
    addr: SocketAddr,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

/// An `IP:PORT` on loopback: the only place this tool sends traffic.
fn loopback(raw: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = raw.parse().map_err(|_| format!("not IP:PORT: {raw}"))?;
    if !addr.ip().is_loopback() {
        return Err("must be a loopback address (127.0.0.0/8 or ::1)".into());
    }
    Ok(addr)
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds; under an hour.
fn parse_duration(v: &str) -> Result<Duration, String> {
    let v = v.trim();
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let bad = || format!("bad duration {v}");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if secs > 0.0 && secs < 3600.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(bad())
    }
}

fn main() {
    match Cli::parse().mode {
        Mode::Run(args) => run_mode(&args),
        Mode::Argon2(args) => argon2_mode(&args),
        Mode::Ready(args) => ready_mode(&args),
    }
}

// ---------------------------------------------------------------------------------------------
// argon2: the single-core verify rate the password budget is measured against.

fn argon2_mode(args: &Argon2Args) {
    use argon2::password_hash::phc::PasswordHash;
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};
    use argon2::{Algorithm, Argon2, Params, Version};

    let seconds = args.seconds;
    let params = Params::new(args.m, args.t, args.p, None)
        .unwrap_or_else(|e| die(&format!("argon2 params: {e}")));
    let hasher = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let password = b"benchmark password 1";
    let phc: String = hasher
        .hash_password(password)
        .map(|h: PasswordHash| h.to_string())
        .unwrap_or_else(|e| die(&format!("argon2 hash: {e}")));
    // As the server does it: parse the PHC string, verify with the parameters it carries.
    let verify = || {
        let parsed = PasswordHash::new(&phc).expect("own hash parses");
        Argon2::default().verify_password(password, &parsed).is_ok()
    };
    assert!(verify(), "argon2 verify of its own hash failed");
    let rate = |f: &mut dyn FnMut() -> bool| {
        let started = Instant::now();
        let mut n: u64 = 0;
        while started.elapsed() < seconds {
            if !f() {
                die("argon2 verify failed");
            }
            n += 1;
        }
        (n, started.elapsed().as_secs_f64())
    };
    let (n, elapsed) = rate(&mut || verify());

    // The same verify with one memory buffer kept across calls (what a dedicated hashing
    // thread could do): no 19 MiB allocation, zeroing and page faults per verify.
    let parsed = PasswordHash::new(&phc).expect("own hash parses");
    let salt = parsed.salt.expect("salt");
    let expected = parsed.hash.expect("hash");
    let reuse_params = Params::try_from(&parsed).expect("params");
    let reuse = Argon2::new(Algorithm::Argon2id, Version::V0x13, reuse_params.clone());
    let mut blocks = vec![argon2::Block::default(); reuse_params.block_count()];
    let mut out = vec![0u8; expected.len()];
    let mut reused_verify = || {
        reuse
            .hash_password_into_with_memory(password, salt.as_ref(), &mut out, &mut blocks)
            .is_ok()
            && out.as_slice() == expected.as_bytes()
    };
    let (n_reuse, elapsed_reuse) = if args.reuse_memory {
        rate(&mut reused_verify)
    } else {
        (0, 1.0)
    };
    // The reused-buffer verify on every core at once, nothing else running: what the machine
    // allows in parallel. On a VM whose vCPUs share physical cores or memory bandwidth this is
    // below cores x the single-core rate, and no server can beat it.
    let threads: usize = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let parallel = if n_reuse > 0 {
        let started = Instant::now();
        let total: u64 = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    let (salt, expected, reuse_params) = (&salt, &expected, &reuse_params);
                    scope.spawn(move || {
                        let reuse =
                            Argon2::new(Algorithm::Argon2id, Version::V0x13, reuse_params.clone());
                        let mut blocks = vec![argon2::Block::default(); reuse_params.block_count()];
                        let mut out = vec![0u8; expected.len()];
                        let mut n: u64 = 0;
                        while started.elapsed() < seconds {
                            let ok = reuse
                                .hash_password_into_with_memory(
                                    password,
                                    salt.as_ref(),
                                    &mut out,
                                    &mut blocks,
                                )
                                .is_ok()
                                && out.as_slice() == expected.as_bytes();
                            if !ok {
                                die("argon2 verify failed");
                            }
                            n += 1;
                        }
                        n
                    })
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        });
        total as f64 / started.elapsed().as_secs_f64()
    } else {
        0.0
    };
    println!(
        "{}",
        json!({
            "mode": "argon2",
            "parallel_threads": threads,
            "parallel_verify_per_s": parallel,
            "verifies": n,
            "seconds": elapsed,
            "verify_per_s": n as f64 / elapsed,
            "ms_per_verify": elapsed * 1000.0 / n as f64,
            "reused_memory_verify_per_s": n_reuse as f64 / elapsed_reuse,
            "phc_prefix": phc.split('$').take(4).collect::<Vec<_>>().join("$"),
        })
    );
}

// ---------------------------------------------------------------------------------------------
// ready: time to first /readyz 200.

fn ready_mode(args: &ReadyArgs) {
    let (addr, timeout) = (args.addr, args.timeout);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("runtime: {e}")));
    rt.block_on(async move {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let mut conn = Conn::new(addr);
            let answer = tokio::time::timeout(
                Duration::from_secs(2),
                conn.send(Method::GET, "/readyz", None, None),
            )
            .await;
            if matches!(answer, Ok(Ok(ref resp)) if resp.status == StatusCode::OK) {
                println!("{}", unix_nanos());
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        die("server not ready before the timeout");
    });
}

/// Wall-clock time, to compare with the `date +%s%N` the script took when it started the server.
#[allow(clippy::disallowed_methods)] // the server's injected-clock rule is not for this tool
fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

// ---------------------------------------------------------------------------------------------
// One keep-alive HTTP/1.1 connection.

struct Resp {
    status: StatusCode,
    retry_after: bool,
    body: Bytes,
}

struct Conn {
    addr: SocketAddr,
    host: String,
    sender: Option<SendRequest<Full<Bytes>>>,
    connects: u64,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            host: addr.to_string(),
            sender: None,
            connects: 0,
        }
    }

    async fn connect(&mut self) -> Result<(), String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("nodelay: {e}"))?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        form: Option<String>,
    ) -> Result<Resp, String> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.connect().await?;
        }
        let result = self.exchange(method, path, auth, form).await;
        if result.is_err() {
            // Whatever state the connection is in, start over on a fresh one.
            self.sender = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        auth: Option<&str>,
        form: Option<String>,
    ) -> Result<Resp, String> {
        let sender = self.sender.as_mut().ok_or("not connected")?;
        sender.ready().await.map_err(|e| format!("ready: {e}"))?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.host.as_str());
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth);
        }
        let body = match form {
            Some(form) => {
                req = req.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Bytes::from(form)
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = resp.status();
        let retry_after = resp.headers().contains_key(RETRY_AFTER);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Resp {
            status,
            retry_after,
            body,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// run: the scenarios.

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
enum Scenario {
    Password,
    PasswordOverload,
    Refresh,
    ClientCredentials,
    Introspect,
    Jwks,
    Ceiling,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::PasswordOverload => "password_overload",
            Self::Refresh => "refresh",
            Self::ClientCredentials => "client_credentials",
            Self::Introspect => "introspect",
            Self::Jwks => "jwks",
            Self::Ceiling => "ceiling",
        }
    }
}

struct Ctx {
    addr: SocketAddr,
    scenario: Scenario,
    duration: Duration,
    gateway: String,
    cc: String,
    rs: String,
    user_prefix: String,
    users: u64,
    password: String,
    scope: String,
    next_user: AtomicU64,
}

/// `Basic base64(urlencode(id):urlencode(secret))` from `ID:SECRET`.
fn basic(pair: &str) -> String {
    match pair.split_once(':') {
        Some((id, secret)) => format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", urlencode(id), urlencode(secret)))
        ),
        None => String::new(),
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Ctx {
    /// The next account, round-robin over all of them, shared by every connection so that no
    /// two connections hammer one account at once.
    fn password_form(&self) -> String {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed) % self.users;
        format!(
            "grant_type=password&username={}&password={}&scope={}",
            urlencode(&format!("{}{:04}", self.user_prefix, n + 1)),
            urlencode(&self.password),
            urlencode(&self.scope)
        )
    }
}

/// What a virtual client carries between requests.
enum State {
    Nothing,
    RefreshToken(Option<String>),
    AccessToken(String),
}

#[derive(Default)]
struct Stats {
    /// Latency of every response, in microseconds.
    latencies: Vec<u32>,
    /// Responses completed before the deadline (what requests/s counts).
    in_window: u64,
    errors: u64,
    transport_errors: u64,
    status: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    relogins: u64,
    relogin_failures: u64,
    setup_failures: u64,
    connects: u64,
    max_us: u64,
}

impl Stats {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.error_samples.len() < 3 {
            self.error_samples.push(what);
        }
    }
}

fn json_field(body: &[u8], field: &str) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get(field)?.as_str().map(str::to_owned)
}

fn body_snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned()
}

/// A password grant for a fresh refresh-token chain.
async fn login(ctx: &Ctx, conn: &mut Conn) -> Result<String, String> {
    let form = ctx.password_form();
    let resp = tokio::time::timeout(
        REQUEST_TIMEOUT,
        conn.send(Method::POST, "/oauth/token", Some(&ctx.gateway), Some(form)),
    )
    .await
    .map_err(|_| "login timed out".to_owned())??;
    if resp.status != StatusCode::OK {
        return Err(format!(
            "login {}: {}",
            resp.status,
            body_snippet(&resp.body)
        ));
    }
    json_field(&resp.body, "refresh_token").ok_or_else(|| "login: no refresh_token".to_owned())
}

async fn setup(ctx: &Ctx, conn: &mut Conn) -> Result<State, String> {
    match ctx.scenario {
        Scenario::Refresh => {
            // Concurrent logins may meet a full hashing queue (503): retry within the bound.
            let deadline = Instant::now() + SETUP_TIMEOUT;
            loop {
                match login(ctx, conn).await {
                    Ok(rt) => return Ok(State::RefreshToken(Some(rt))),
                    Err(e) if Instant::now() >= deadline => return Err(e),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
        Scenario::Introspect => {
            let form = format!(
                "grant_type=client_credentials&scope={}",
                urlencode(&ctx.scope)
            );
            let resp = conn
                .send(Method::POST, "/oauth/token", Some(&ctx.cc), Some(form))
                .await?;
            if resp.status != StatusCode::OK {
                return Err(format!(
                    "token {}: {}",
                    resp.status,
                    body_snippet(&resp.body)
                ));
            }
            json_field(&resp.body, "access_token")
                .map(State::AccessToken)
                .ok_or_else(|| "no access_token".to_owned())
        }
        _ => {
            conn.connect().await?;
            Ok(State::Nothing)
        }
    }
}

async fn worker(ctx: Arc<Ctx>, barrier: Arc<Barrier>) -> Stats {
    let mut stats = Stats::default();
    let mut conn = Conn::new(ctx.addr);
    let mut state = match tokio::time::timeout(SETUP_TIMEOUT, setup(&ctx, &mut conn)).await {
        Ok(Ok(state)) => state,
        Ok(Err(e)) => {
            stats.setup_failures += 1;
            stats.error(format!("setup: {e}"));
            State::Nothing
        }
        Err(_) => {
            stats.setup_failures += 1;
            stats.error("setup timed out".into());
            State::Nothing
        }
    };
    barrier.wait().await;
    let deadline = Instant::now() + ctx.duration;
    if stats.setup_failures > 0 {
        // Keep the connection count honest only for virtual clients that are ready.
        stats.connects = conn.connects;
        return stats;
    }
    let introspect_form = match &state {
        State::AccessToken(token) => {
            format!("token={}&token_type_hint=access_token", urlencode(token))
        }
        _ => String::new(),
    };
    let cc_form = format!(
        "grant_type=client_credentials&scope={}",
        urlencode(&ctx.scope)
    );

    while Instant::now() < deadline {
        // A broken refresh chain starts over with a new login (not timed, counted apart).
        if let State::RefreshToken(None) = state {
            stats.relogins += 1;
            match login(&ctx, &mut conn).await {
                Ok(rt) => state = State::RefreshToken(Some(rt)),
                Err(_) => {
                    stats.relogin_failures += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            }
        }
        let (method, path, auth, form) = match (ctx.scenario, &state) {
            (Scenario::Password | Scenario::PasswordOverload, _) => (
                Method::POST,
                "/oauth/token",
                Some(ctx.gateway.as_str()),
                Some(ctx.password_form()),
            ),
            (Scenario::Refresh, State::RefreshToken(Some(rt))) => (
                Method::POST,
                "/oauth/token",
                Some(ctx.gateway.as_str()),
                Some(format!(
                    "grant_type=refresh_token&refresh_token={}",
                    urlencode(rt)
                )),
            ),
            (Scenario::ClientCredentials, _) => (
                Method::POST,
                "/oauth/token",
                Some(ctx.cc.as_str()),
                Some(cc_form.clone()),
            ),
            (Scenario::Introspect, _) => (
                Method::POST,
                "/oauth/introspect",
                Some(ctx.rs.as_str()),
                Some(introspect_form.clone()),
            ),
            (Scenario::Jwks, _) => (Method::GET, "/.well-known/jwks.json", None, None),
            (Scenario::Ceiling, _) => (Method::GET, "/healthz", None, None),
            (Scenario::Refresh, _) => unreachable!("refresh state without a token"),
        };
        let started = Instant::now();
        let result =
            tokio::time::timeout(REQUEST_TIMEOUT, conn.send(method, path, auth, form)).await;
        let finished = Instant::now();
        let resp = match result {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => {
                stats.transport_errors += 1;
                stats.error(e);
                *stats.status.entry("transport error".into()).or_default() += 1;
                if let State::RefreshToken(_) = state {
                    state = State::RefreshToken(None);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            Err(_) => {
                stats.transport_errors += 1;
                stats.error("request timed out".into());
                *stats.status.entry("timeout".into()).or_default() += 1;
                conn.sender = None;
                continue;
            }
        };
        let us = u64::try_from((finished - started).as_micros()).unwrap_or(u64::MAX);
        stats.latencies.push(u32::try_from(us).unwrap_or(u32::MAX));
        stats.max_us = stats.max_us.max(us);
        if finished <= deadline {
            stats.in_window += 1;
        }
        let code = resp.status.as_u16();
        let (key, ok) = match ctx.scenario {
            Scenario::PasswordOverload => match code {
                200 => ("200".to_owned(), true),
                400 if json_field(&resp.body, "error").as_deref() == Some("invalid_grant") => {
                    ("400 invalid_grant".to_owned(), true)
                }
                503 if resp.retry_after => ("503 Retry-After".to_owned(), true),
                503 => ("503 without Retry-After".to_owned(), false),
                other => (other.to_string(), false),
            },
            Scenario::Introspect if code == 200 => {
                let active = serde_json::from_slice::<Value>(&resp.body)
                    .ok()
                    .and_then(|v| v.get("active").and_then(Value::as_bool))
                    == Some(true);
                if active {
                    ("200".to_owned(), true)
                } else {
                    ("200 inactive".to_owned(), false)
                }
            }
            Scenario::Refresh if code == 200 => match json_field(&resp.body, "refresh_token") {
                Some(rt) => {
                    state = State::RefreshToken(Some(rt));
                    ("200".to_owned(), true)
                }
                None => ("200 without refresh_token".to_owned(), false),
            },
            _ => (code.to_string(), code == 200),
        };
        *stats.status.entry(key.clone()).or_default() += 1;
        if !ok {
            stats.error(format!("{key}: {}", body_snippet(&resp.body)));
            if ctx.scenario == Scenario::Refresh {
                state = State::RefreshToken(None);
            }
        }
    }
    stats.connects = conn.connects;
    stats
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

fn run_mode(args: &RunArgs) {
    let (addr, scenario, connections, threads) =
        (args.addr, args.scenario, args.connections, args.threads);
    if connections == 0 || connections > 5000 {
        die("--connections must be 1..=5000");
    }
    let ctx = Arc::new(Ctx {
        addr,
        scenario,
        duration: args.duration,
        gateway: basic(&args.gateway),
        cc: basic(&args.cc),
        rs: basic(&args.rs),
        user_prefix: args.user_prefix.clone(),
        users: args.users.max(1),
        password: args.password.clone(),
        scope: args.scope.clone(),
        next_user: AtomicU64::new(0),
    });
    let rt = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
    .unwrap_or_else(|e| die(&format!("runtime: {e}")));

    let (all, elapsed) = rt.block_on(async {
        let barrier = Arc::new(Barrier::new(connections + 1));
        let handles: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(worker(ctx.clone(), barrier.clone())))
            .collect();
        barrier.wait().await;
        let started = Instant::now();
        let mut all = Vec::with_capacity(connections);
        for h in handles {
            match h.await {
                Ok(stats) => all.push(stats),
                Err(e) => die(&format!("a virtual client panicked: {e}")),
            }
        }
        (all, started.elapsed())
    });

    let mut total = Stats::default();
    for s in all {
        total.latencies.extend(s.latencies);
        total.in_window += s.in_window;
        total.errors += s.errors;
        total.transport_errors += s.transport_errors;
        total.relogins += s.relogins;
        total.relogin_failures += s.relogin_failures;
        total.setup_failures += s.setup_failures;
        total.connects += s.connects;
        total.max_us = total.max_us.max(s.max_us);
        for (k, v) in s.status {
            *total.status.entry(k).or_default() += v;
        }
        for e in s.error_samples {
            if total.error_samples.len() < 5 {
                total.error_samples.push(e);
            }
        }
    }
    total.latencies.sort_unstable();
    let duration = ctx.duration.as_secs_f64();
    println!(
        "{}",
        json!({
            "scenario": scenario.name(),
            "connections": connections,
            "loadgen_threads": threads,
            "duration_s": duration,
            "elapsed_s": elapsed.as_secs_f64(),
            "responses": total.latencies.len(),
            "rps": total.in_window as f64 / duration,
            "p50_ms": percentile(&total.latencies, 50.0),
            "p90_ms": percentile(&total.latencies, 90.0),
            "p99_ms": percentile(&total.latencies, 99.0),
            "max_ms": total.max_us as f64 / 1000.0,
            "errors": total.errors,
            "transport_errors": total.transport_errors,
            "setup_failures": total.setup_failures,
            "relogins": total.relogins,
            "relogin_failures": total.relogin_failures,
            "connects": total.connects,
            "status": total.status,
            "error_samples": total.error_samples,
        })
    );
}
