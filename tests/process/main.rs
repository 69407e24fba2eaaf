//! `tessera serve` run as a process: what only a real process shows (its logs, signals, TLS,
//! files it creates, memory under a flood, the exception tracker it reports to).

#[path = "../common/mod.rs"]
mod common;

mod exceptions;
mod files;
mod healthcheck;
mod serving;
mod telemetry;
mod tls;

/// A postgres:// URL of the `postgres` user with `password` in it.
fn with_password(url: &str, password: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{password}@"), 1)
}
