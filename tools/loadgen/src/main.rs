//! tessera-loadgen: the load generator behind `scripts/bench`, in three modes: `run` (a
//! scenario over keep-alive connections), `argon2` (verify rates) and `ready` (time to the first
//! `/readyz` 200); `tessera-loadgen help MODE` lists each mode's options. Each prints JSON.
//!
//! Traffic goes only to loopback addresses (anything else is refused), and every loop is bounded
//! by the duration or a timeout.

mod argon2;
mod conn;
mod flow;
mod ready;
mod run;

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, Subcommand};

use argon2::Argon2Args;
use ready::ReadyArgs;
use run::RunArgs;

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
    Run(Box<RunArgs>),
    /// Single-thread argon2id verify rate as the server once verified (PHC parse,
    /// `verify_password`, which allocates the memory per call), then with one buffer reused
    /// across calls, then that on `--threads` threads at once.
    Argon2(Argon2Args),
    /// Polls GET /readyz every 2 ms until it answers 200; prints the Unix time in nanoseconds.
    Ready(ReadyArgs),
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
        Mode::Run(args) => run::run(&args),
        Mode::Argon2(args) => argon2::measure(&args),
        Mode::Ready(args) => ready::wait(&args),
    }
}
