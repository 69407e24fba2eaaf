//! A TCP proxy in front of Postgres that can take the database away (refuse, stall) and cut
//! single connections on what they carry (traps).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Forward connections to Postgres.
    Up,
    /// Cut every proxied connection and refuse new ones (the port is closed): Postgres down.
    Refuse,
    /// Cut every proxied connection; accept new ones and never answer: a network partition.
    Stall,
}

/// A TCP proxy in front of the shared Postgres, so that one test can take "its" database away
/// without stopping the server every other test uses.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    mode: Arc<watch::Sender<Mode>>,
    pub(crate) traps: Traps,
    task: tokio::task::JoinHandle<()>,
}

/// One trap per direction of every proxied connection.
#[derive(Clone, Default)]
pub(crate) struct Traps {
    /// Drops the next reply from Postgres holding some bytes and cuts its connection: an
    /// answer lost between the database and Tessera.
    pub(crate) reply: Trap,
    /// Forwards the next request to Postgres holding some bytes, then cuts its connection: a
    /// statement Postgres goes on running for a client that is gone.
    pub(crate) request: Trap,
    /// Holds back the next reply from Postgres holding some bytes, and every later one on its
    /// connection, with both sockets left open: a network gone silent, neither side told.
    pub(crate) freeze: Trap,
    /// Drops the next reply from Postgres holding some bytes and, in the same step, takes the
    /// database away ([`Mode::Refuse`]): an answer lost because the server died, so that
    /// nothing can be asked of it again.
    pub(crate) reply_then_refuse: Trap,
    /// Holds back the next reply from Postgres holding some bytes for [`SILENCE`], then cuts
    /// its connection: a network gone silent that the kernel gives up on later.
    pub(crate) silence: Trap,
}

/// How long the [`Traps::silence`] trap holds a connection silent before cutting it.
pub(crate) const SILENCE: Duration = Duration::from_secs(6);

/// Cuts the connection that next carries some bytes one way. One-shot.
#[derive(Clone, Default)]
pub(crate) struct Trap {
    needle: Arc<std::sync::Mutex<Option<Vec<u8>>>>,
    sprung: Arc<AtomicUsize>,
}

impl Trap {
    pub(crate) fn arm(&self, needle: &[u8]) {
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

    pub(crate) fn sprung(&self) -> usize {
        self.sprung.load(Ordering::SeqCst)
    }
}

impl Proxy {
    /// A proxy in front of the Postgres server that holds the database at `db_url`.
    pub(crate) async fn before(db_url: &str) -> Proxy {
        Self::start(host_port(db_url)).await
    }

    /// `db_url` through this proxy.
    pub(crate) fn url_for(&self, db_url: &str) -> String {
        db_url.replacen(&host_port(db_url), &format!("127.0.0.1:{}", self.port), 1)
    }

    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("addr").port();
        let (mode, rx) = watch::channel(Mode::Up);
        let mode = Arc::new(mode);
        let traps = Traps::default();
        let task = tokio::spawn(proxy_loop(
            listener,
            port,
            upstream,
            (mode.clone(), rx),
            traps.clone(),
        ));
        Proxy {
            port,
            mode,
            traps,
            task,
        }
    }

    pub(crate) fn set(&self, mode: Mode) {
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
    (mode_tx, mut rx): (Arc<watch::Sender<Mode>>, watch::Receiver<Mode>),
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
                        tokio::spawn(pipe(
                            socket,
                            upstream.clone(),
                            (mode_tx.clone(), rx.clone()),
                            traps.clone(),
                        ));
                    } else {
                        stalled.push(socket);
                    }
                }
            }
        }
    }
}

/// Forwards one connection until either side closes, the proxy leaves `Up` or a trap springs.
async fn pipe(
    client: TcpStream,
    upstream: String,
    (mode, mut rx): (Arc<watch::Sender<Mode>>, watch::Receiver<Mode>),
    traps: Traps,
) {
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
            if traps.reply_then_refuse.springs_on(&buf[..n]) {
                mode.send_replace(Mode::Refuse);
                return;
            }
            if traps.silence.springs_on(&buf[..n]) {
                tokio::time::sleep(SILENCE).await;
                return;
            }
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

/// `host:port` of a postgres:// URL.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").expect("scheme").1;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().expect("host").to_owned()
}
