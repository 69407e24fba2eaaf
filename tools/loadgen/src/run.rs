//! `run`: one scenario over `--connections` virtual clients, each on its own keep-alive
//! connection, checking every answer; prints the rate, latencies and answers as JSON.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, ValueEnum};
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::conn::Conn;
use crate::{die, flow, loopback, parse_duration};

/// Longest any single request may take before it counts as a transport error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest the per-connection setup (connect, first login) may take.
pub const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args)]
pub struct RunArgs {
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
    /// ID:SECRET of the first-party web client (authorization_code, no consent page).
    #[arg(long, value_name = "ID:SECRET", default_value = "")]
    web: String,
    /// The web client's registered redirect URI.
    #[arg(long, default_value = "https://bench.example/cb")]
    redirect_uri: String,
    /// The scope the web client asks for.
    #[arg(long, default_value = "openid")]
    web_scope: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Scenario {
    Password,
    PasswordOverload,
    Refresh,
    ClientCredentials,
    Introspect,
    Jwks,
    Ceiling,
    /// The whole authorization code flow of a fresh browser (`flow.rs`).
    AuthcodeFlow,
    /// Authorize with a login session, then the code exchange (`flow.rs`).
    CodeExchange,
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
            Self::AuthcodeFlow => "authcode_flow",
            Self::CodeExchange => "code_exchange",
        }
    }

    fn is_flow(self) -> bool {
        matches!(self, Self::AuthcodeFlow | Self::CodeExchange)
    }
}

pub struct Ctx {
    pub addr: SocketAddr,
    pub scenario: Scenario,
    pub duration: Duration,
    gateway: String,
    cc: String,
    rs: String,
    /// `Basic ...` of the web client.
    pub web: String,
    pub web_id: String,
    pub redirect_uri: String,
    pub web_scope: String,
    user_prefix: String,
    users: u64,
    pub password: String,
    scope: String,
    next_user: AtomicU64,
    /// What makes this run's PKCE verifiers differ from another run's.
    pub run_seed: u128,
    /// Authorization requests made so far, by every virtual client.
    pub flow_seq: AtomicU64,
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

pub fn urlencode(s: &str) -> String {
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
    pub fn next_username(&self) -> String {
        let n = self.next_user.fetch_add(1, Ordering::Relaxed) % self.users;
        format!("{}{:04}", self.user_prefix, n + 1)
    }

    fn password_form(&self) -> String {
        format!(
            "grant_type=password&username={}&password={}&scope={}",
            urlencode(&self.next_username()),
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
pub struct Stats {
    /// Latency of every response (of every iteration, in the flow scenarios), in microseconds.
    pub latencies: Vec<u32>,
    /// Responses completed before the deadline (what requests/s counts; in the flow scenarios,
    /// completed code exchanges).
    pub in_window: u64,
    pub errors: u64,
    pub transport_errors: u64,
    pub status: BTreeMap<String, u64>,
    error_samples: Vec<String>,
    relogins: u64,
    relogin_failures: u64,
    pub setup_failures: u64,
    pub connects: u64,
    pub max_us: u64,
    /// The flow scenarios: HTTP requests sent, and the latency of each step's answers.
    pub http_requests: u64,
    steps: BTreeMap<&'static str, Vec<u32>>,
}

impl Stats {
    pub fn step(&mut self, step: &'static str, took: Duration) {
        let us = u32::try_from(took.as_micros()).unwrap_or(u32::MAX);
        self.steps.entry(step).or_default().push(us);
    }

    pub fn error(&mut self, what: String) {
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

pub fn body_snippet(body: &[u8]) -> String {
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
    if ctx.scenario.is_flow() {
        return flow::worker(ctx, barrier).await;
    }
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
            (Scenario::AuthcodeFlow | Scenario::CodeExchange, _) => {
                unreachable!("flow scenarios run in flow::worker")
            }
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
                conn.reset();
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

/// The wall clock at start, in nanoseconds: different in every run.
#[allow(clippy::disallowed_methods)] // the server's injected-clock rule is not for this tool
fn run_seed() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    f64::from(sorted[rank.clamp(1, sorted.len()) - 1]) / 1000.0
}

pub fn run(args: &RunArgs) {
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
        web: basic(&args.web),
        web_id: args.web.split(':').next().unwrap_or("").to_owned(),
        redirect_uri: args.redirect_uri.clone(),
        web_scope: args.web_scope.clone(),
        user_prefix: args.user_prefix.clone(),
        users: args.users.max(1),
        password: args.password.clone(),
        scope: args.scope.clone(),
        next_user: AtomicU64::new(0),
        run_seed: run_seed(),
        flow_seq: AtomicU64::new(0),
    });
    if scenario.is_flow() && ctx.web_id.is_empty() {
        die("--scenario authcode_flow and code_exchange need --web ID:SECRET");
    }
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
        total.http_requests += s.http_requests;
        for (k, v) in s.steps {
            total.steps.entry(k).or_default().extend(v);
        }
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
    let steps: serde_json::Map<String, Value> = total
        .steps
        .iter_mut()
        .map(|(step, latencies)| {
            latencies.sort_unstable();
            (
                (*step).to_owned(),
                json!({
                    "responses": latencies.len(),
                    "p50_ms": percentile(latencies, 50.0),
                    "p99_ms": percentile(latencies, 99.0),
                }),
            )
        })
        .collect();
    let mut report = json!({
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
    });
    if scenario.is_flow() {
        report["http_requests"] = json!(total.http_requests);
        report["steps"] = Value::Object(steps);
    }
    println!("{report}");
}
