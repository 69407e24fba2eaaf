//! Resilience: several `tessera serve` processes on one Postgres, `kill -9` under a refresh
//! load, answers from the database lost on the way, a database outage during load, a Postgres
//! failover to a synchronous standby, and response timing. Every test drives real processes over real HTTP on 127.0.0.1, and every
//! loop is bounded in time so that nothing can hang CI.
//!
//! The binary is the debug build that `cargo test` makes (`CARGO_BIN_EXE_tessera`), not a
//! release build, which would cost CI a build of its own. What the tests print is therefore
//! about a debug build; the assertions are about correctness and generous bounds, never about
//! speed.
//!
//! The tests take one lock and so run one at a time: one loads the machine (the crash test),
//! another measures it (the timing test), and they must not disturb each other. libtest starts
//! them in the order of their names, so the modules' names keep the order they run in: the
//! failover, the lost answers, the outage, then the crash test and its load, the shared database, and the
//! timing last.

#[path = "../common/mod.rs"]
mod common;

mod failover;
mod lost_answers;
mod outage;
mod proxy;
mod replicated;
mod restart_after_kill;
mod shared_postgres;
mod timing;

use std::path::Path;

use common::TestDb;
use common::http::{Answer, login_as};
use common::server::{CLIENT, PASSWORD, Server, base_env, overlay};

/// Instances behind one load balancer share one public issuer URL; a token from one instance
/// must verify at every other.
const ISSUER: &str = "http://tessera.cluster.test";

/// What every process here runs with over the common settings: the shared issuer, and logs
/// at warn level, so that the last lines of a log are the ones a test looks for.
const CLUSTER: [(&str, &str); 2] = [
    ("TESSERA__SERVER__ISSUER", ISSUER),
    ("TESSERA__LOG__LEVEL", "warn"),
];

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One instance on the test's database, with `extra` settings over [`CLUSTER`].
fn start(db: &TestDb, extra: &[(&str, &str)]) -> Server {
    start_on(&db.path(), &db.url, extra)
}

/// One instance on `db_url` (through a proxy, say), with `extra` settings over [`CLUSTER`].
fn start_on(dir: &Path, db_url: &str, extra: &[(&str, &str)]) -> Server {
    let settings: Vec<(&str, &str)> = CLUSTER.iter().chain(extra).copied().collect();
    Server::start_on(dir, db_url, &settings)
}

/// The settings of an instance, for the CLI run on its own.
fn cluster_env(db_url: &str) -> Vec<(String, String)> {
    let mut env = base_env(db_url, 0);
    overlay(&mut env, &CLUSTER);
    env
}

/// Logs alice in through [`CLIENT`]; returns the whole token response.
async fn login(http: &reqwest::Client, base: &str, secret: &str) -> Answer {
    login_as(http, base, (CLIENT, secret), "alice", PASSWORD).await
}
