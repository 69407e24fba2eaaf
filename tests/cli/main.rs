//! The `tessera` binary run as a process, against SQLite and Postgres.

#[path = "../common/mod.rs"]
mod common;

mod audit;
mod bad_input;
mod clients;
mod config;
mod paging;
mod roles;
mod tokens;
mod upgrade;
mod users;

use std::ffi::{OsStr, OsString};
use std::process::Output;

use assert_cmd::Command;
use serde_json::Value;

use common::{Backend, TestDb};

/// A password that meets the default policy (8 to 128 characters, not the username).
pub const PASSWORD: &str = "correct horse battery";

/// The actor the audit log should name: the OS user the process runs as (`id -un`), although
/// every command runs with `USER=tester`, which any caller could set.
pub fn actor() -> String {
    static ACTOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ACTOR
        .get_or_init(|| {
            let out = std::process::Command::new("id")
                .arg("-un")
                .output()
                .expect("id -un");
            assert!(out.status.success(), "id -un: {out:?}");
            format!("cli:{}", String::from_utf8_lossy(&out.stdout).trim())
        })
        .clone()
}

/// A fresh database and the `tessera` binary pointed at it.
pub struct Tessera {
    pub db: TestDb,
}

impl Tessera {
    pub async fn new(backend: Backend) -> Self {
        Self {
            db: TestDb::new(backend).await,
        }
    }

    /// The environment every run gets: this test's database, cheap hashing, `USER=tester`;
    /// `None` removes an inherited variable (those [`common::server::inherited`] names, and
    /// `LOGNAME`).
    pub fn env(&self) -> Vec<(OsString, Option<OsString>)> {
        let mut env: Vec<(OsString, Option<OsString>)> = common::server::inherited()
            .into_iter()
            .chain(std::env::var_os("LOGNAME").map(|_| "LOGNAME".into()))
            .map(|key| (key, None))
            .collect();
        env.push(("DATABASE_URL".into(), None));
        for (key, value) in [
            ("TESSERA__DATABASE__URL", self.db.url.as_str()),
            ("TESSERA__PASSWORDS__ARGON2_MEMORY_KIB", "1024"),
            ("TESSERA__PASSWORDS__ARGON2_ITERATIONS", "1"),
            ("USER", "tester"),
        ] {
            env.push((key.into(), Some(value.into())));
        }
        env
    }

    /// The binary with [`Tessera::env`], working directory the test's temp dir.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("tessera").expect("the tessera binary is built");
        for (key, value) in self.env() {
            match value {
                Some(value) => cmd.env(key, value),
                None => cmd.env_remove(key),
            };
        }
        cmd.current_dir(self.db.path())
            .timeout(std::time::Duration::from_secs(60));
        cmd
    }

    /// Runs `tessera ARGS` with `stdin` (empty when `None`) and returns what it did.
    pub fn run<I, S>(&self, args: I, stdin: Option<&str>) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.cmd();
        cmd.args(args);
        cmd.write_stdin(stdin.unwrap_or(""));
        cmd.output().expect("tessera runs")
    }

    /// Runs a command that must succeed; returns its stdout.
    #[track_caller]
    pub fn ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        expect_success(&self.run(args, None))
    }

    /// Like [`Tessera::ok`], with `stdin`.
    #[track_caller]
    pub fn ok_stdin<I, S>(&self, args: I, stdin: &str) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        expect_success(&self.run(args, Some(stdin)))
    }

    /// Runs a command that must print JSON; returns it parsed.
    #[track_caller]
    pub fn json<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Runs a command that must fail with `code`; returns stderr. Exit 1 must come with exactly
    /// one line on stderr, starting with `error: `, and nothing on stdout; any failure says why.
    #[track_caller]
    pub fn fail<I, S>(&self, args: I, code: i32) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        expect_failure(&self.run(args, None), code)
    }

    /// Like [`Tessera::fail`], with `stdin`.
    #[track_caller]
    pub fn fail_stdin<I, S>(&self, args: I, stdin: &str, code: i32) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        expect_failure(&self.run(args, Some(stdin)), code)
    }

    /// `tessera user add NAME --password-stdin [--role R]...` that must succeed.
    #[track_caller]
    pub fn add_user(&self, name: &str, roles: &[&str]) -> Value {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        for role in roles {
            args.extend(["--role", role]);
        }
        let out = self.ok_stdin(&args, &format!("{PASSWORD}\n"));
        assert!(out.contains(&format!("user {name} created")), "{out}");
        self.user(name)
    }

    /// `tessera role add NAME` that must succeed.
    #[track_caller]
    pub fn add_role(&self, name: &str) {
        self.ok(["role", "add", name]);
    }

    /// `tessera user show NAME --json`.
    #[track_caller]
    pub fn user(&self, name: &str) -> Value {
        self.json(["user", "show", name, "--json"])
    }

    /// `tessera user list --json`.
    #[track_caller]
    pub fn users(&self) -> Vec<Value> {
        array(self.json(["user", "list", "--json"]))
    }

    /// The usernames `user list --json` reports.
    #[track_caller]
    pub fn usernames(&self) -> Vec<String> {
        self.users()
            .iter()
            .map(|u| u["username"].as_str().expect("username").to_owned())
            .collect()
    }

    /// `tessera role list --json`.
    #[track_caller]
    pub fn roles(&self) -> Vec<Value> {
        array(self.json(["role", "list", "--json"]))
    }

    /// `tessera client list --json`.
    #[track_caller]
    pub fn clients(&self) -> Vec<Value> {
        array(self.json(["client", "list", "--json"]))
    }

    /// `tessera audit --json --limit 1000`, newest first.
    #[track_caller]
    pub fn audit(&self) -> Vec<Value> {
        array(self.json(["audit", "--json", "--limit", "1000"]))
    }

    /// Everything the admin commands can show: users, roles, clients and the audit log.
    /// Used to prove a refused command changed nothing.
    #[track_caller]
    pub fn snapshot(&self) -> Value {
        serde_json::json!({
            "users": self.users(),
            "roles": self.roles(),
            "clients": self.clients(),
            "audit": self.audit(),
        })
    }
}

#[track_caller]
pub fn array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => panic!("expected a JSON array, got {other}"),
    }
}

#[track_caller]
fn expect_success(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "expected success\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

#[track_caller]
fn expect_failure(out: &Output, code: i32) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    if code == 1 {
        assert_one_line_error(&stderr);
        assert!(stdout.is_empty(), "nothing on stdout on error: {stdout}");
    }
    assert!(!stderr.trim().is_empty(), "a failure says why");
    stderr
}

/// Exactly one line, `error: ...`, ending in a newline.
#[track_caller]
pub fn assert_one_line_error(stderr: &str) {
    assert!(stderr.starts_with("error: "), "stderr: {stderr:?}");
    assert!(stderr.ends_with('\n'), "stderr: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
}

/// The value of a string field of a JSON object.
#[track_caller]
pub fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string in {value}"))
}

/// A JSON array of strings as a `Vec`.
#[track_caller]
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// Checks an RFC 3339 UTC timestamp as the CLI prints it.
#[track_caller]
pub fn assert_timestamp(value: &Value, field: &str) {
    let raw = str_field(value, field);
    time::OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{field} = {raw:?} is not RFC 3339: {e}"));
}

/// The actions of the audit rows, newest first.
pub fn actions(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}
