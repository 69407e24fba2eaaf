//! `tessera serve` as a child process on a port of its own, and the admin CLI run beside it on
//! the same database and settings. The binary is the debug build `cargo test` makes.
//!
//! Settings are environment variables: [`base_env`] gives every process the same start (the
//! test's database, a key-encryption key, cheap argon2, JSON logs at debug level), and each
//! caller lays its own settings over them. Nothing is inherited from the shell that runs the
//! tests ([`inherited`]).

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::TestDb;

/// The debug binary built by `cargo test`.
pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");
/// alice's password, as [`Server::add_user`] sets it.
pub const PASSWORD: &str = "Unmistakable-Pa55phrase-7Q";
/// The key-encryption key every process runs with unless a test sets another (or none).
pub const KEK: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// The confidential client [`Server::seed`] registers.
pub const CLIENT: &str = "gw";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Variables of the shell running the tests that a process under test must not see: another
/// database, other settings, an actor name or a log filter would change what it does.
pub fn inherited() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(key, _)| key)
        .filter(|key| {
            let key = key.to_string_lossy();
            key.starts_with("TESSERA__")
                || key == "TESSERA_ACTOR"
                || key == "DATABASE_URL"
                || key == "RUST_LOG"
        })
        .collect()
}

/// The settings every process gets: the server on `port` with its own URL as issuer, the
/// database at `db_url`, [`KEK`], JSON logs at debug level, and cheap argon2 (the same for every
/// account and for the dummy hash; real parameters are measured in the benchmarks).
pub fn base_env(db_url: &str, port: u16) -> Vec<(String, String)> {
    [
        ("TESSERA__SERVER__BIND", format!("127.0.0.1:{port}")),
        ("TESSERA__METRICS__BIND", "127.0.0.1:0".to_owned()),
        (
            "TESSERA__SERVER__ISSUER",
            format!("http://127.0.0.1:{port}"),
        ),
        ("TESSERA__DATABASE__URL", db_url.to_owned()),
        ("TESSERA__KEYS__ENCRYPTION_KEY", KEK.to_owned()),
        ("TESSERA__LOG__FORMAT", "json".to_owned()),
        ("TESSERA__LOG__LEVEL", "debug".to_owned()),
        ("TESSERA__PASSWORDS__ARGON2_MEMORY_KIB", "1024".to_owned()),
        ("TESSERA__PASSWORDS__ARGON2_ITERATIONS", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Lays `extra` over `env`: a setting given again replaces the earlier value.
pub fn overlay(env: &mut Vec<(String, String)>, extra: &[(&str, &str)]) {
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
}

/// Runs the CLI in `dir` with `env` and then `extra`, `stdin` written to it (empty when
/// `None`); returns what it did.
pub fn run_cli<S: AsRef<OsStr>>(
    dir: &Path,
    env: &[(String, String)],
    args: &[S],
    stdin: Option<&str>,
    extra: &[(&str, &str)],
) -> Output {
    let mut cmd = Command::new(BIN);
    for key in inherited() {
        cmd.env_remove(key);
    }
    let mut child = cmd
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .envs(extra.iter().copied())
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
    child.wait_with_output().expect("cli output")
}

/// [`run_cli`] that must succeed; returns its stdout.
#[track_caller]
pub fn cli_ok(dir: &Path, env: &[(String, String)], args: &[&str], stdin: Option<&str>) -> String {
    let out = run_cli(dir, env, args, stdin, &[]);
    assert!(
        out.status.success(),
        "tessera {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One `tessera serve` process, killed when dropped. Its output goes to a log file in the
/// test's directory, one file per start.
pub struct Server {
    child: Child,
    pub port: u16,
    dir: PathBuf,
    env: Vec<(String, String)>,
    umask: Option<String>,
    log: PathBuf,
    starts: u32,
    scheme: &'static str,
}

impl Server {
    /// Starts the binary on the test's database with `extra` settings over [`base_env`].
    pub fn start(db: &TestDb, extra: &[(&str, &str)]) -> Server {
        Self::launch(&db.path(), &db.url, extra, None)
    }

    /// Starts the binary in `dir` on `db_url` (which may differ from the test database's own
    /// URL, e.g. through a proxy), with `extra` settings over [`base_env`].
    pub fn start_on(dir: &Path, db_url: &str, extra: &[(&str, &str)]) -> Server {
        Self::launch(dir, db_url, extra, None)
    }

    /// [`Server::start`], the process running under `umask`.
    pub fn start_with_umask(db: &TestDb, extra: &[(&str, &str)], umask: &str) -> Server {
        Self::launch(&db.path(), &db.url, extra, Some(umask))
    }

    fn launch(dir: &Path, db_url: &str, extra: &[(&str, &str)], umask: Option<&str>) -> Server {
        let port = free_port();
        // The metrics listener takes a port of the kernel's choosing (`metrics_port` reads it
        // back): a port found free and handed over can be taken meanwhile.
        let mut env = base_env(db_url, port);
        overlay(&mut env, extra);
        let scheme = if env.iter().any(|(k, _)| k == "TESSERA__SERVER__TLS__CERT") {
            "https"
        } else {
            "http"
        };
        let log = dir.join(format!("serve-{port}-1.log"));
        let umask = umask.map(str::to_owned);
        let child = Self::spawn(dir, &env, umask.as_deref(), &log);
        Server {
            child,
            port,
            dir: dir.to_path_buf(),
            env,
            umask,
            log,
            starts: 1,
            scheme,
        }
    }

    fn spawn(dir: &Path, env: &[(String, String)], umask: Option<&str>, log: &Path) -> Child {
        let out = std::fs::File::create(log).expect("log file");
        let mut command = match umask {
            None => Command::new(BIN),
            Some(mask) => {
                let mut sh = Command::new("sh");
                sh.args(["-c", &format!("umask {mask} && exec \"$0\" \"$@\""), BIN]);
                sh
            }
        };
        for key in inherited() {
            command.env_remove(key);
        }
        command
            .arg("serve")
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("clone")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn tessera serve")
    }

    /// `kill -9`: no shutdown hook runs, in-flight requests die with the process.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap");
    }

    /// Starts the process again on the same port, database and settings.
    pub fn restart(&mut self) {
        assert!(
            self.child.try_wait().expect("wait").is_some(),
            "still running"
        );
        self.starts += 1;
        self.log = self
            .dir
            .join(format!("serve-{}-{}.log", self.port, self.starts));
        self.child = Self::spawn(&self.dir, &self.env, self.umask.as_deref(), &self.log);
    }

    fn move_to_another_port(&mut self) {
        self.port = free_port();
        let bind = format!("127.0.0.1:{}", self.port);
        let issuer = format!("{}://127.0.0.1:{}", self.scheme, self.port);
        let mut moved = vec![("TESSERA__SERVER__BIND", bind.as_str())];
        // Only the issuer that followed the port: one a test set stays.
        if self
            .env
            .iter()
            .any(|(k, v)| k == "TESSERA__SERVER__ISSUER" && v.starts_with("http://127.0.0.1:"))
        {
            moved.push(("TESSERA__SERVER__ISSUER", issuer.as_str()));
        }
        overlay(&mut self.env, &moved);
        self.log = self.dir.join(format!("serve-{}-1.log", self.port));
        self.child = Self::spawn(&self.dir, &self.env, self.umask.as_deref(), &self.log);
    }

    /// The port the metrics listener bound, as its log line says (once it is up).
    pub fn metrics_port(&self) -> u16 {
        self.logs()
            .lines()
            .rev()
            .filter(|l| l.contains("metrics listening"))
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter_map(|v| {
                let address = v["address"]
                    .as_str()
                    .or_else(|| v["fields"]["address"].as_str())?
                    .to_owned();
                address.rsplit_once(':')?.1.parse().ok()
            })
            .next()
            .unwrap_or_else(|| panic!("no metrics listener in the log: {}", self.log_tail()))
    }

    /// `http://127.0.0.1:PORT` (`https` with `server.tls` set).
    pub fn base(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// The settings the process runs with.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// Waits (at most 30 s) until /healthz answers 200: the process is up.
    pub async fn wait_live(&mut self, http: &reqwest::Client) {
        self.wait_for(http, "/healthz").await;
    }

    /// Waits (at most 30 s) until /readyz answers 200: the database answers and a key signs.
    pub async fn wait_ready(&mut self, http: &reqwest::Client) {
        self.wait_for(http, "/readyz").await;
    }

    async fn wait_for(&mut self, http: &reqwest::Client, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = http.get(self.url(path)).send().await
                && r.status() == 200
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // The port found free was taken before the server bound it (another test's
                // outgoing connection, say): start again on another.
                if self.starts == 1 && self.logs().contains("Address already in use") {
                    self.move_to_another_port();
                    continue;
                }
                panic!("server exited with {status}: {}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{path} did not answer 200 within 30 s: {}", self.log_tail());
    }

    /// Runs the CLI against the same database and settings, `extra` settings over them.
    pub fn run_cli(&self, args: &[&str], stdin: Option<&str>, extra: &[(&str, &str)]) -> Output {
        run_cli(&self.dir, &self.env, args, stdin, extra)
    }

    /// Runs the CLI against the same database and settings; it must succeed.
    #[track_caller]
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        cli_ok(&self.dir, &self.env, args, stdin)
    }

    /// [`Server::cli`] of a command that prints JSON; returns it parsed.
    #[track_caller]
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli(args, None);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// A user holding the role `admin`, with [`PASSWORD`].
    pub fn add_user(&self, name: &str) {
        self.cli(
            &["user", "add", name, "--role", "admin", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
        );
    }

    /// A role, user alice and the confidential client [`CLIENT`] (password, refresh_token and
    /// client_credentials grants, scope `read`, allowed to introspect); returns its secret.
    pub fn seed(&self) -> String {
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
    pub fn audit(&self, action: &str) -> Vec<Value> {
        let rows = self.cli_json(&["audit", "--action", action, "--limit", "1000", "--json"]);
        rows.as_array().expect("audit rows").clone()
    }

    /// Everything the process has logged since it last started.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The last 40 lines of [`Server::logs`].
    pub fn log_tail(&self) -> String {
        let logs = self.logs();
        let tail: Vec<&str> = logs.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    /// Sends `sig` (`-TERM`, ...) to the process.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// Waits for the process to exit, `within` at most.
    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
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
    pub fn peak_rss_kib(&self) -> u64 {
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
