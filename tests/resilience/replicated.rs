//! A Postgres primary and a synchronous standby of the test's own, on ports of their own, in a
//! temporary directory: initdb, pg_basebackup, pg_ctl. Run as the `postgres` user when the
//! tests run as root (Postgres refuses to run as root). Both servers are stopped and the
//! directory removed when the pair is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::server::free_port;

pub struct Replicated {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub primary_port: u16,
    pub standby_port: u16,
}

impl Replicated {
    /// Starts the primary, copies it into a standby and starts that; returns once the standby
    /// streams as the primary's synchronous standby.
    pub fn start() -> Self {
        let bin = postgres_bin();
        let dir = tempfile::Builder::new()
            .prefix("tessera-failover-")
            .tempdir()
            .expect("temp dir");
        if is_root() {
            run("chown", &["postgres:postgres", &path(dir.path())]);
        }
        let pair = Self {
            bin,
            primary_port: free_port(),
            standby_port: free_port(),
            dir,
        };
        let primary = pair.data("primary");
        pair.pg(
            "initdb",
            &[
                "-D",
                &path(&primary),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ],
        );
        pair.configure(&primary, pair.primary_port, "");
        pair.pg_ctl(&[
            "-D",
            &path(&primary),
            "-l",
            &pair.log("primary"),
            "-w",
            "start",
        ]);
        let standby = pair.data("standby");
        pair.pg(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &pair.primary_port.to_string(),
                "-U",
                "postgres",
                "-D",
                &path(&standby),
                "-X",
                "stream",
                "-R",
            ],
        );
        pair.configure(&standby, pair.standby_port, "");
        pair.pg_ctl(&[
            "-D",
            &path(&standby),
            "-l",
            &pair.log("standby"),
            "-w",
            "start",
        ]);
        // A commit returns only once the standby has flushed it (synchronous_commit = on with
        // a synchronous standby): what a platform team runs when no answer may be lost. Set on
        // the primary only, after the copy: the promoted standby has no standby of its own to
        // wait for, as a failover manager would arrange.
        pair.configure(
            &primary,
            pair.primary_port,
            "synchronous_standby_names = '*'\nsynchronous_commit = on\n",
        );
        pair.pg_ctl(&["-D", &path(&primary), "reload"]);
        pair.wait_for_sync_standby();
        pair
    }

    /// The database URL naming both hosts, the primary first (reached at `primary_port`,
    /// which may be a proxy's), in clear so that a proxy's traps can read the messages.
    pub fn url(&self, primary_port: u16, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{primary_port},127.0.0.1:{}/{database}\
             ?sslmode=disable&target_session_attrs=read-write",
            self.standby_port
        )
    }

    /// `psql -c SQL` on the server at `port`, database `postgres`; its output, trimmed.
    pub fn psql(&self, port: u16, sql: &str) -> String {
        let out = self.pg_output(
            "psql",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "postgres",
                "-qAtX",
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Kills the primary as a crash would: `pg_ctl stop -m immediate`.
    pub fn kill_primary(&self) {
        self.pg_ctl(&[
            "-D",
            &path(&self.data("primary")),
            "-m",
            "immediate",
            "stop",
        ]);
    }

    /// `pg_ctl promote` on the standby; returns once it takes writes.
    pub fn promote_standby(&self) {
        self.pg_ctl(&["-D", &path(&self.data("standby")), "-w", "promote"]);
    }

    fn wait_for_sync_standby(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.psql(
                self.primary_port,
                "SELECT sync_state FROM pg_stat_replication",
            );
            if state == "sync" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the standby did not become synchronous: {state:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn configure(&self, data: &Path, port: u16, extra: &str) {
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{}'\n\
             max_connections = 100\nfsync = off\n{extra}",
            path(self.dir.path())
        );
        let file = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&file).expect("postgresql.conf");
        text.push_str(&conf);
        std::fs::write(&file, text).expect("write postgresql.conf");
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self, name: &str) -> String {
        path(&self.dir.path().join(format!("{name}.log")))
    }

    /// The log of `primary` or `standby`.
    pub fn log_text(&self, name: &str) -> String {
        std::fs::read_to_string(self.log(name)).unwrap_or_default()
    }

    /// The end of a server's log, for a failure message.
    pub fn log_tail(&self, name: &str) -> String {
        let text = self.log_text(name);
        let lines: Vec<&str> = text.lines().rev().take(20).collect();
        lines.into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn pg_ctl(&self, args: &[&str]) {
        self.pg("pg_ctl", args);
    }

    fn pg(&self, tool: &str, args: &[&str]) {
        let out = self.pg_output(tool, args);
        assert!(
            out.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pg_output(&self, tool: &str, args: &[&str]) -> Output {
        let program = path(&self.bin.join(tool));
        let mut command = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", &program]);
            c
        } else {
            Command::new(&program)
        };
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("PGHOST")
            .env_remove("PGPORT")
            .output()
            .unwrap_or_else(|e| panic!("{tool}: {e}"))
    }
}

impl Drop for Replicated {
    fn drop(&mut self) {
        for name in ["primary", "standby"] {
            let data = self.data(name);
            if data.join("postmaster.pid").exists() {
                let _ = self.pg_output("pg_ctl", &["-D", &path(&data), "-m", "immediate", "stop"]);
            }
        }
    }
}

/// The newest installed Postgres's `bin` directory (Debian's layout).
fn postgres_bin() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("Postgres server binaries under /usr/lib/postgresql")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .expect("an initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

fn run(program: &str, args: &[&str]) {
    let status = Command::new(program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(status.success(), "{program} {args:?} failed");
}

fn path(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}
