//! Postgres failovers under refresh load: a primary and a synchronous standby of the test's
//! own, Tessera on the multi-host URL naming both. Once the primary is killed (`pg_ctl stop -m
//! immediate`) and the standby promoted (`pg_ctl promote`); once the primary is fenced
//! read-only while alive and the standby promoted, as a planned switchover does. Tessera must
//! find the new primary by itself, answer 503 with Retry-After meanwhile (never 500, never
//! invalid_grant), keep the JWKS up, lose no refresh token it delivered and revive none it
//! rotated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::common::http::{Answer, get, post, refresh, send};
use crate::common::server::{CLIENT, Server};
use crate::proxy::Proxy;
use crate::replicated::Replicated;
use crate::{SERIAL, login, start_on};

const CHAINS: usize = 6;
/// What a failover manager takes to decide the primary is gone, shortened.
const DETECTION: Duration = Duration::from_millis(1000);
/// "Within a few seconds of the promotion": a bound, not a benchmark.
const RESUME_BOUND: Duration = Duration::from_secs(10);

/// The crash: every chain's last token works on the new primary, every token rotated before
/// the kill stays refused, one audit row per delivered rotation, and the LISTEN connection
/// (client cache, key changes) follows too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_to_a_synchronous_standby_loses_nothing_and_revives_nothing() {
    let _serial = SERIAL.lock().await;
    crash(
        Drill::start(Reach::Directly, Manager::ByHand).await,
        "failover",
    )
    .await;
}

/// The same crash with Patroni and etcd running the pair: Patroni notices the dead leader and
/// promotes the standby itself, once the leader key expires (its `ttl`, 20 s at least). The
/// rotations in flight at the kill wait that long to settle, so the settling and request
/// timeouts are raised to cover it, as an operator of such a cluster would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_driven_by_patroni_loses_nothing_and_revives_nothing() {
    let _serial = SERIAL.lock().await;
    crash(
        Drill::start(Reach::Directly, Manager::Patroni).await,
        "patroni",
    )
    .await;
}

async fn crash(drill: Drill, what: &str) {
    let load = drill.load().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let killed_at = Instant::now();
    drill.on_pair(Replicated::kill_primary).await;
    if drill.manager == Manager::ByHand {
        tokio::time::sleep(DETECTION).await;
    }
    let promoted_at = drill.promote().await;
    eprintln!(
        "{what}: primary killed, standby promoted {:?} later",
        promoted_at - killed_at
    );
    let (chains, probes) = load.finish_after(promoted_at).await;
    drill.keep_logs(what);

    let mut rotations = drill.check_answers(&chains, killed_at);
    drill.check_resumed(&chains, promoted_at, what);
    drill.check_probes(&probes, killed_at).await;

    // Nothing lost: each chain's last token works on the new primary.
    for (i, chain) in chains.iter().enumerate() {
        let a = drill.refresh(&chain.last).await;
        assert_eq!(a.status, 200, "chain {i}'s last token: {}", a.body);
        rotations += 1;
    }

    // Nothing revived: the tokens rotated last before the kill are still refused. The latest
    // comes first: presenting a rotated token revokes its family, which would refuse the
    // others anyway.
    for (i, chain) in chains.iter().enumerate() {
        let rotated_before: Vec<&Step> = chain
            .steps
            .iter()
            .rev()
            .filter(|s| s.end < killed_at && s.status() == Some(200))
            .take(3)
            .collect();
        assert!(
            !rotated_before.is_empty(),
            "chain {i} rotated nothing before the kill"
        );
        for s in rotated_before {
            let a = drill.refresh(&s.presented).await;
            assert!(
                a.is_invalid_grant(),
                "chain {i}: a token rotated before the kill was accepted again: {} {}",
                a.status,
                a.body
            );
        }
    }

    // One audit row per delivered rotation, read through the CLI on the same multi-host URL
    // (its first host is the dead one).
    let audited = drill
        .server
        .cli_json(&[
            "audit",
            "--action",
            "token.refresh",
            "--limit",
            "10000",
            "--json",
        ])
        .as_array()
        .expect("rows")
        .len();
    assert_eq!(audited, rotations, "token.refresh audit rows against 200s");

    // The LISTEN connection followed: the client cache turns on again on the new primary.
    let deadline = Instant::now() + Duration::from_secs(15);
    let before = drill
        .metric("tessera_client_lookups_total{source=\"memory\"}")
        .await;
    let mut heard = false;
    while Instant::now() < deadline && !heard {
        drill.client_credentials().await;
        heard = drill
            .metric("tessera_client_lookups_total{source=\"memory\"}")
            .await
            > before;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        heard,
        "the client cache never came back on after the failover"
    );
    drill.check_moved().await;
}

/// A planned switchover: the primary, still running, is made read-only
/// (`default_transaction_read_only`, as a fencing step does), then the standby is promoted.
/// Connections to the old primary stay open and would answer every write with an error; none
/// may be used once the new primary is known.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_switchover_leaves_a_primary_turned_read_only() {
    let _serial = SERIAL.lock().await;
    let drill = Drill::start(Reach::Directly, Manager::ByHand).await;
    let load = drill.load().await;
    tokio::time::sleep(Duration::from_millis(1000)).await;

    let fenced_at = Instant::now();
    drill
        .on_pair(|pair| {
            pair.psql(
                pair.primary_port,
                "ALTER SYSTEM SET default_transaction_read_only = on",
            );
            pair.psql(pair.primary_port, "SELECT pg_reload_conf()");
        })
        .await;
    // Twice the failover manager's wait: the watch notices the read-only primary within its
    // 1 s tick, and /readyz must have time to say so before the promotion ends the search.
    tokio::time::sleep(2 * DETECTION).await;
    let promoted_at = drill.promote().await;
    let (chains, probes) = load.finish_after(promoted_at).await;
    drill.keep_logs("switchover");

    drill.check_answers(&chains, fenced_at);
    drill.check_resumed(&chains, promoted_at, "switchover");
    drill.check_probes(&probes, fenced_at).await;
    // Every pooled connection now runs on the new primary: a burst that would meet one left
    // on the old host succeeds whole.
    for _ in 0..40 {
        drill.client_credentials().await;
    }
    for (i, chain) in chains.iter().enumerate() {
        let a = drill.refresh(&chain.last).await;
        assert_eq!(a.status, 200, "chain {i}'s last token: {}", a.body);
    }
    drill.check_moved().await;
}

/// The answer of a rotation that committed (on the primary and its synchronous standby) dies
/// with the primary: the proxy drops the reply and closes the way to the primary in one step,
/// and the primary is then killed. Tessera settles the rotation on the new primary, finding the
/// successor only this request knew, and answers 200 with it; the client's retry with the old
/// token would have been refused as reuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failover_settles_a_rotation_whose_answer_died_with_the_primary() {
    let _serial = SERIAL.lock().await;
    let drill = Drill::start(Reach::ThroughProxy, Manager::ByHand).await;
    let first = login(&drill.http, &drill.base, &drill.secret)
        .await
        .field("refresh_token");
    let proxy = drill.proxy.as_ref().expect("proxy");
    // The batched rotation's reply is the first to name the user; it comes after the commit.
    proxy.traps.reply_then_refuse.arm(b"alice");
    let asking = {
        let (http, base, secret, first) = (
            drill.http.clone(),
            drill.base.clone(),
            drill.secret.clone(),
            first.clone(),
        );
        tokio::spawn(async move { refresh(&http, &base, (CLIENT, &secret), &first).await })
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.traps.reply_then_refuse.sprung() == 0 {
        assert!(Instant::now() < deadline, "the rotation's reply never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drill.on_pair(Replicated::kill_primary).await;
    tokio::time::sleep(DETECTION).await;
    let promoted_at = drill.promote().await;
    let a = asking.await.expect("join").expect("refresh");
    drill.keep_logs("lost-answer");
    assert_eq!(a.status, 200, "the settled rotation: {}", a.body);
    eprintln!(
        "lost answer: settled {:?} after the promotion",
        Instant::now() - promoted_at
    );
    assert_eq!(
        drill
            .metric("tessera_refresh_rotations_recovered_total{how=\"found\"}")
            .await,
        1.0,
        "found on the new primary, not done again"
    );
    let successor = a.field("refresh_token");
    assert_eq!(drill.refresh(&successor).await.status, 200);
    assert!(drill.refresh(&first).await.is_invalid_grant());
    drill.check_moved().await;
}

/// How Tessera reaches the primary.
#[derive(PartialEq)]
enum Reach {
    Directly,
    /// Through a [`Proxy`], whose traps can lose an answer.
    ThroughProxy,
}

/// Who promotes the standby.
#[derive(PartialEq, Clone, Copy)]
enum Manager {
    /// The test, with `pg_ctl promote`.
    ByHand,
    /// Patroni, by itself.
    Patroni,
}

/// The pair, and Tessera serving on the URL naming both.
struct Drill {
    pair: Arc<Replicated>,
    manager: Manager,
    proxy: Option<Proxy>,
    server: Server,
    http: reqwest::Client,
    secret: String,
    base: String,
    metrics_url: String,
    _dir: tempfile::TempDir,
}

impl Drill {
    async fn start(reach: Reach, manager: Manager) -> Self {
        let pair = tokio::task::spawn_blocking(move || match manager {
            Manager::ByHand => Replicated::start(),
            Manager::Patroni => Replicated::start_with_patroni(),
        })
        .await
        .expect("start the pair");
        // Patroni promotes after its leader key expires: settling and each request must be
        // allowed to outlast that.
        let (settle, request, client) = match manager {
            Manager::ByHand => ("12s".to_owned(), "30s".to_owned(), Duration::from_secs(15)),
            Manager::Patroni => {
                let ttl = crate::replicated::PATRONI_TTL.as_secs();
                (
                    format!("{}s", ttl + 10),
                    format!("{}s", ttl + 20),
                    Duration::from_secs(ttl + 30),
                )
            }
        };
        pair.psql(pair.primary_port, "CREATE DATABASE tessera");
        let proxy = match reach {
            Reach::Directly => None,
            Reach::ThroughProxy => Some(
                Proxy::before(&format!(
                    "postgres://postgres@127.0.0.1:{}/tessera",
                    pair.primary_port
                ))
                .await,
            ),
        };
        let primary_port = proxy.as_ref().map_or(pair.primary_port, |p| p.port);
        let dir = tempfile::tempdir().expect("temp dir");
        let http = reqwest::Client::builder()
            .timeout(client)
            .build()
            .expect("http client");
        let mut server = start_on(
            dir.path(),
            &pair.url(primary_port, "tessera"),
            &[
                ("TESSERA__DATABASE__ACQUIRE_TIMEOUT", "1s"),
                ("TESSERA__DATABASE__SETTLE_TIMEOUT", &settle),
                ("TESSERA__SERVER__REQUEST_TIMEOUT", &request),
                // The metrics listener's port is read from its info line; the client cache
                // says when it turns on and off at debug.
                ("TESSERA__LOG__LEVEL", "info,tessera=debug"),
            ],
        );
        server.wait_ready(&http).await;
        let secret = server.seed();
        let base = server.base();
        let metrics_url = format!("http://127.0.0.1:{}/metrics", server.metrics_port());
        Self {
            pair: Arc::new(pair),
            manager,
            proxy,
            server,
            http,
            secret,
            base,
            metrics_url,
            _dir: dir,
        }
    }

    /// Runs `f` on the pair in a blocking task (the Postgres tools are processes).
    async fn on_pair(&self, f: impl FnOnce(&Replicated) + Send + 'static) {
        let pair = self.pair.clone();
        tokio::task::spawn_blocking(move || f(&pair))
            .await
            .expect("Postgres tool");
    }

    /// Promotes the standby; returns when it takes writes.
    async fn promote(&self) -> Instant {
        self.on_pair(Replicated::promote_standby).await;
        Instant::now()
    }

    /// [`CHAINS`] refresh chains, each rotating its token as fast as it is answered, and
    /// probes of `/readyz` and the JWKS.
    async fn load(&self) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let last_success = Arc::new(Mutex::new(vec![None; CHAINS]));
        let mut chains = Vec::new();
        for i in 0..CHAINS {
            let first = login(&self.http, &self.base, &self.secret)
                .await
                .field("refresh_token");
            let (http, base, secret) = (self.http.clone(), self.base.clone(), self.secret.clone());
            let (stop, last_success) = (stop.clone(), last_success.clone());
            chains.push(tokio::spawn(async move {
                let mut steps = Vec::new();
                let mut token = first;
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let start = Instant::now();
                    let outcome = refresh(&http, &base, (CLIENT, &secret), &token)
                        .await
                        .map_err(|e| e.to_string());
                    let end = Instant::now();
                    let next = match &outcome {
                        Ok(a) if a.status == 200 => Some(a.field("refresh_token")),
                        _ => None,
                    };
                    let failed = next.is_none();
                    if let Some(next) = next {
                        last_success.lock().expect("lock")[i] = Some(end);
                        steps.push(Step {
                            presented: std::mem::replace(&mut token, next),
                            start,
                            end,
                            outcome,
                        });
                    } else {
                        // The same token again, as a client given 503 would.
                        steps.push(Step {
                            presented: token.clone(),
                            start,
                            end,
                            outcome,
                        });
                    }
                    if failed {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Chain { steps, last: token }
            }));
        }
        let probing = {
            let (http, base, stop) = (self.http.clone(), self.base.clone(), stop.clone());
            tokio::spawn(async move {
                let mut probes = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    for path in ["/readyz", "/.well-known/jwks.json"] {
                        let a = get(&http, &format!("{base}{path}")).await;
                        probes.push(Probe {
                            path,
                            at: Instant::now(),
                            status: a.status,
                            reason: a.body["reason"].as_str().unwrap_or_default().to_owned(),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                probes
            })
        };
        Load {
            stop,
            last_success,
            chains,
            probing,
        }
    }

    /// Every answer was 200 or 503 temporarily_unavailable with Retry-After; returns the 200s.
    fn check_answers(&self, chains: &[Chain], since: Instant) -> usize {
        let (mut rotations, mut unavailable) = (0, 0);
        for (i, chain) in chains.iter().enumerate() {
            for s in &chain.steps {
                let when = s.start.checked_duration_since(since);
                let a = s.outcome.as_ref().unwrap_or_else(|e| {
                    panic!(
                        "chain {i}: transport error at {when:?}, after {:?}: {e}; server log:\n{}",
                        s.end - s.start,
                        self.server.log_tail()
                    )
                });
                match a.status {
                    200 => rotations += 1,
                    _ if a.is_unavailable() => unavailable += 1,
                    _ => panic!(
                        "chain {i}: {} {} at {when:?} (took {:?}); server log:\n{}",
                        a.status,
                        a.body,
                        s.end - s.start,
                        self.server.log_tail()
                    ),
                }
            }
        }
        eprintln!("{rotations} rotations, {unavailable} answered 503");
        rotations
    }

    /// Every chain succeeded again within [`RESUME_BOUND`] of the promotion; prints how soon.
    fn check_resumed(&self, chains: &[Chain], promoted_at: Instant, what: &str) {
        let mut first_success = Vec::new();
        for (i, chain) in chains.iter().enumerate() {
            let first = chain
                .steps
                .iter()
                .filter(|s| s.end > promoted_at && s.status() == Some(200))
                .map(|s| s.end - promoted_at)
                .next()
                .unwrap_or_else(|| {
                    panic!(
                        "chain {i} never succeeded after the promotion; server log:\n{}\n\
                         standby log:\n{}",
                        self.server.log_tail(),
                        self.pair.log_tail("standby")
                    )
                });
            first_success.push(first);
        }
        first_success.sort();
        let (earliest, latest) = (first_success[0], first_success[CHAINS - 1]);
        eprintln!(
            "{what}: first success {earliest:?} after the promotion, every chain by {latest:?}"
        );
        assert!(
            latest <= RESUME_BOUND,
            "a chain took {latest:?} after the promotion to succeed"
        );
    }

    /// The JWKS answered throughout; /readyz said why it was not ready, then was ready.
    async fn check_probes(&self, probes: &[Probe], since: Instant) {
        for p in probes.iter().filter(|p| p.path == "/.well-known/jwks.json") {
            assert_eq!(
                p.status,
                200,
                "JWKS at {:?}",
                p.at.checked_duration_since(since)
            );
        }
        let not_ready: Vec<&Probe> = probes
            .iter()
            .filter(|p| p.path == "/readyz" && p.status != 200)
            .collect();
        assert!(!not_ready.is_empty(), "/readyz never said it was not ready");
        for p in &not_ready {
            assert_eq!(p.status, 503);
            assert!(!p.reason.is_empty(), "/readyz 503 without a reason");
        }
        let reasons: std::collections::BTreeSet<&str> =
            not_ready.iter().map(|p| p.reason.as_str()).collect();
        eprintln!("/readyz reasons: {reasons:?}");
        assert_eq!(
            get(&self.http, &format!("{}/readyz", self.base))
                .await
                .status,
            200
        );
    }

    /// Tessera logged the move and counted it.
    async fn check_moved(&self) {
        assert!(
            self.server.logs().contains("the database primary moved"),
            "no log of the move: {}",
            self.server.log_tail()
        );
        assert_eq!(
            self.metric("tessera_database_primary_changes_total").await,
            1.0
        );
        let recovered = self.metrics_text().await;
        for line in recovered
            .lines()
            .filter(|l| l.starts_with("tessera_refresh_rotations_recovered_total"))
        {
            eprintln!("{line}");
        }
    }

    async fn refresh(&self, token: &str) -> Answer {
        refresh(&self.http, &self.base, (CLIENT, &self.secret), token)
            .await
            .expect("refresh")
    }

    async fn client_credentials(&self) {
        let form = [("grant_type", "client_credentials")];
        let req = post(
            &self.http,
            &self.base,
            "/oauth/token",
            (CLIENT, &self.secret),
            &form,
        );
        let a = send(req).await.expect("client_credentials");
        assert_eq!(a.status, 200, "client_credentials: {}", a.body);
    }

    async fn metrics_text(&self) -> String {
        let r = self
            .http
            .get(&self.metrics_url)
            .send()
            .await
            .expect("metrics");
        r.text().await.expect("metrics text")
    }

    /// The value of the sample named `series` exactly (labels included); 0 when absent.
    async fn metric(&self, series: &str) -> f64 {
        self.metrics_text()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0)
    }

    /// The server's and both Postgres servers' logs, kept under
    /// `target/resilience-artefacts/` for whoever reads a failure (the test's directories go
    /// with it).
    fn keep_logs(&self, what: &str) {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/resilience-artefacts");
        if std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let _ = std::fs::write(dir.join(format!("{what}-serve.log")), self.server.logs());
        for name in ["primary", "standby"] {
            let _ = std::fs::write(
                dir.join(format!("{what}-{name}.log")),
                self.pair.log_text(name),
            );
        }
    }
}

/// The running load.
struct Load {
    stop: Arc<AtomicBool>,
    last_success: Arc<Mutex<Vec<Option<Instant>>>>,
    chains: Vec<JoinHandle<Chain>>,
    probing: JoinHandle<Vec<Probe>>,
}

impl Load {
    /// Runs on until every chain has succeeded on the new primary for a second (or the bound
    /// has passed, which the checks report), then stops.
    async fn finish_after(self, promoted_at: Instant) -> (Vec<Chain>, Vec<Probe>) {
        let deadline = promoted_at + RESUME_BOUND + Duration::from_secs(1);
        while Instant::now() < deadline {
            let settled = self
                .last_success
                .lock()
                .expect("lock")
                .iter()
                .all(|at| at.is_some_and(|at| at > promoted_at + Duration::from_secs(1)));
            if settled {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop.store(true, Ordering::SeqCst);
        let mut chains = Vec::new();
        for chain in self.chains {
            chains.push(chain.await.expect("chain"));
        }
        (chains, self.probing.await.expect("probes"))
    }
}

struct Chain {
    steps: Vec<Step>,
    /// The token the chain holds at the end.
    last: String,
}

/// One refresh of a chain.
struct Step {
    presented: String,
    start: Instant,
    end: Instant,
    outcome: Result<Answer, String>,
}

impl Step {
    fn status(&self) -> Option<u16> {
        self.outcome.as_ref().ok().map(|a| a.status)
    }
}

/// A probe of `/readyz` or the JWKS while the load runs.
struct Probe {
    path: &'static str,
    at: Instant,
    status: u16,
    reason: String,
}
