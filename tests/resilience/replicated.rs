//! A Postgres primary and a synchronous standby of the test's own, on ports of their own, in a
//! temporary directory: either made and promoted by hand (initdb, pg_basebackup, pg_ctl), or
//! run by Patroni with an etcd of its own (Debian's `patroni` and `etcd-server`), which then
//! promotes the standby itself. Run as the `postgres` user when the tests run as root
//! (Postgres refuses to run as root). Everything is stopped and the directory removed when the
//! pair is dropped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::server::free_port;

pub struct Replicated {
    bin: PathBuf,
    dir: tempfile::TempDir,
    pub primary_port: u16,
    pub standby_port: u16,
    /// Whether Patroni runs the pair (and promotes the standby).
    patroni: bool,
    /// etcd and the Patroni nodes (each behind `runuser` when run as root).
    children: std::sync::Mutex<Vec<std::process::Child>>,
}

/// How long Patroni's leader key lives (its minimum): a failover takes about this long.
pub const PATRONI_TTL: Duration = Duration::from_secs(20);

impl Replicated {
    fn empty(patroni: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("tessera-failover-")
            .tempdir()
            .expect("temp dir");
        if is_root() {
            run("chown", &["postgres:postgres", &path(dir.path())]);
        }
        Self {
            bin: postgres_bin(),
            primary_port: free_port(),
            standby_port: free_port(),
            dir,
            patroni,
            children: std::sync::Mutex::default(),
        }
    }

    /// Starts etcd and two Patroni nodes, `primary` first; returns once `primary` leads and
    /// `standby` streams as its synchronous standby.
    pub fn start_with_patroni() -> Self {
        for program in ["/usr/bin/etcd", "/usr/bin/patroni"] {
            assert!(
                std::path::Path::new(program).exists(),
                "{program} is missing: `scripts/ensure-packages` installs it (scripts/test runs it)"
            );
        }
        let pair = Self::empty(true);
        let (client, peer) = (free_port(), free_port());
        pair.spawn(
            "etcd",
            "/usr/bin/etcd",
            &[
                "--name=tessera-test",
                &format!("--data-dir={}", path(&pair.data("etcd"))),
                &format!("--listen-client-urls=http://127.0.0.1:{client}"),
                &format!("--advertise-client-urls=http://127.0.0.1:{client}"),
                &format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                &format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                &format!("--initial-cluster=tessera-test=http://127.0.0.1:{peer}"),
                // Debian's Patroni speaks etcd's v2 API.
                "--enable-v2=true",
            ],
        );
        for (name, port) in [
            ("primary", pair.primary_port),
            ("standby", pair.standby_port),
        ] {
            let config = pair.dir.path().join(format!("{name}.yml"));
            std::fs::write(&config, pair.patroni_config(name, port, client))
                .expect("write the Patroni configuration");
            pair.spawn(name, "/usr/bin/patroni", &[&path(&config)]);
            // The first node bootstraps the cluster and leads; the second copies it.
            pair.wait_for(name, port, name == "primary");
        }
        pair.wait_for_sync_standby();
        pair
    }

    fn patroni_config(&self, name: &str, port: u16, etcd: u16) -> String {
        let api = free_port();
        let dir = path(self.dir.path());
        format!(
            "scope: tessera-test\nname: {name}\n\
             restapi:\n  listen: 127.0.0.1:{api}\n  connect_address: 127.0.0.1:{api}\n\
             etcd:\n  host: 127.0.0.1:{etcd}\n  protocol: http\n\
             bootstrap:\n  dcs:\n    ttl: {ttl}\n    loop_wait: 1\n    retry_timeout: 5\n\
             \x20   synchronous_mode: true\n    postgresql:\n      use_pg_rewind: false\n\
             \x20     parameters:\n        synchronous_commit: 'on'\n        fsync: 'off'\n\
             \x20       max_connections: 100\n\
             \x20 initdb:\n    - encoding: UTF8\n    - locale: C.UTF-8\n    - auth: trust\n\
             \x20 pg_hba:\n    - local all all trust\n\
             \x20   - host replication postgres 127.0.0.1/32 trust\n\
             \x20   - host all all 127.0.0.1/32 trust\n\
             postgresql:\n  listen: 127.0.0.1:{port}\n  connect_address: 127.0.0.1:{port}\n\
             \x20 data_dir: {dir}/{name}\n  bin_dir: {bin}\n  pgpass: {dir}/pgpass-{name}\n\
             \x20 authentication:\n    replication:\n      username: postgres\n\
             \x20   superuser:\n      username: postgres\n\
             \x20 parameters:\n    unix_socket_directories: {dir}\n",
            ttl = PATRONI_TTL.as_secs(),
            bin = path(&self.bin),
        )
    }

    /// Waits until the server on `port` answers, as a primary or not.
    fn wait_for(&self, name: &str, port: u16, primary: bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let want = if primary { "f" } else { "t" };
        while self.try_psql(port, "SELECT pg_is_in_recovery()").as_deref() != Some(want) {
            assert!(
                Instant::now() < deadline,
                "{name} did not come up: {}",
                self.log_tail(name)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Starts `program` in the background as the `postgres` user, its output in `NAME.log`.
    fn spawn(&self, name: &str, program: &str, args: &[&str]) {
        let log = std::fs::File::create(self.log(name)).expect("log file");
        if is_root() {
            run("chown", &["postgres:postgres", &self.log(name)]);
        }
        let mut command = self.as_postgres(program);
        let child = command
            .args(args)
            .current_dir(self.dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(child);
    }

    /// Starts the primary, copies it into a standby and starts that; returns once the standby
    /// streams as the primary's synchronous standby.
    pub fn start() -> Self {
        let pair = Self::empty(false);
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
        self.try_psql(port, sql)
            .unwrap_or_else(|| panic!("psql on {port} failed: {sql}"))
    }

    /// [`Replicated::psql`], `None` when it fails (the server down or not up yet).
    fn try_psql(&self, port: u16, sql: &str) -> Option<String> {
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
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Kills the primary as a crash would: `pg_ctl stop -m immediate`, and with Patroni, its
    /// Patroni first (`kill -9`), or it would start Postgres again in place.
    pub fn kill_primary(&self) {
        if self.patroni {
            self.kill_patroni("primary");
        }
        self.pg_ctl(&[
            "-D",
            &path(&self.data("primary")),
            "-m",
            "immediate",
            "stop",
        ]);
    }

    /// `pg_ctl promote` on the standby; returns once it takes writes. With Patroni, waits for
    /// Patroni to promote it (once the leader key expires).
    pub fn promote_standby(&self) {
        if !self.patroni {
            self.pg_ctl(&["-D", &path(&self.data("standby")), "-w", "promote"]);
            return;
        }
        let deadline = Instant::now() + PATRONI_TTL + Duration::from_secs(30);
        while self
            .try_psql(self.standby_port, "SELECT pg_is_in_recovery()")
            .as_deref()
            != Some("f")
        {
            assert!(
                Instant::now() < deadline,
                "Patroni never promoted the standby: {}",
                self.log_tail("standby")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill_patroni(&self, name: &str) {
        let config = path(&self.dir.path().join(format!("{name}.yml")));
        let _ = Command::new("pkill")
            .args(["-9", "-f", &format!("patroni {config}")])
            .status();
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
        let mut command = self.as_postgres(&path(&self.bin.join(tool)));
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
        if self.patroni {
            self.kill_patroni("standby");
            self.kill_patroni("primary");
            let _ = Command::new("pkill")
                .args([
                    "-9",
                    "-f",
                    &format!(
                        "etcd --name=tessera-test --data-dir={}",
                        path(&self.data("etcd"))
                    ),
                ])
                .status();
            let children = self.children.get_mut().unwrap_or_else(|p| p.into_inner());
            for child in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for name in ["primary", "standby"] {
            let data = self.data(name);
            if data.join("postmaster.pid").exists() {
                let _ = self.pg_output("pg_ctl", &["-D", &path(&data), "-m", "immediate", "stop"]);
            }
        }
    }
}

impl Replicated {
    /// `program`, run as the `postgres` user when the tests run as root.
    fn as_postgres(&self, program: &str) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
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
