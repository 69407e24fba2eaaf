//! `ready`: the time of the first `/readyz` 200, to measure start-up.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use hyper::{Method, StatusCode};

use crate::conn::Conn;
use crate::{die, loopback, parse_duration};

#[derive(Args)]
pub struct ReadyArgs {
    /// The server, IP:PORT on loopback.
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = loopback)]
    addr: SocketAddr,
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

pub fn wait(args: &ReadyArgs) {
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
