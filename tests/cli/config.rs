//! Configuration that cannot be used, and a database that cannot be reached: exit 1, one
//! clear line, no secrets, nothing changed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::common::Backend;
use crate::{PASSWORD, Tessera, assert_one_line_error};

fn write(t: &Tessera, name: &str, contents: &str) -> PathBuf {
    let path = t.db.path().join(name);
    std::fs::write(&path, contents).expect("write config file");
    path
}

/// `--config FILE` followed by `rest`.
fn with_config(config: &Path, rest: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--config".into(), config.into()];
    args.extend(rest.iter().map(OsString::from));
    args
}

/// A user to add with a broken configuration: it must never appear.
fn try_add_user(t: &Tessera, config: &Path) -> String {
    t.fail_stdin(
        with_config(config, &["user", "add", "mallory", "--password-stdin"]),
        &format!("{PASSWORD}\n"),
        1,
    )
}

async fn config_file_that_does_not_parse(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_user("alice", &[]);
    let before = t.snapshot();
    let bad = write(&t, "bad.toml", "this is = = not [toml\n");
    let err = try_add_user(&t, &bad);
    assert!(err.starts_with("error: configuration: "), "{err}");
    assert!(err.contains("bad.toml"), "names the file: {err}");
    assert!(err.contains("TOML parse error"), "{err}");
    assert!(err.contains("line 1"), "names the line: {err}");
    let err = t.fail(with_config(&bad, &["user", "list"]), 1);
    assert!(err.contains("bad.toml"), "{err}");
    assert_eq!(t.snapshot(), before);
}

/// `error: a: b: b` is not one clear line: a cause must not be printed twice.
async fn error_messages_are_not_repeated(backend: Backend) {
    let t = Tessera::new(backend).await;
    let bad = write(&t, "bad.toml", "this is = = not [toml\n");
    let err = try_add_user(&t, &bad);
    assert_eq!(
        err.matches("TOML parse error").count(),
        1,
        "the parse error is given once: {err}"
    );
    let unknown = write(&t, "unknown.toml", "[database]\nmax_conections = 4\n");
    let err = try_add_user(&t, &unknown);
    assert_eq!(
        err.matches("unknown field").count(),
        1,
        "the unknown key is reported once: {err}"
    );
    let out = t
        .cmd()
        .args(["user", "list"])
        .env(
            "TESSERA__DATABASE__URL",
            "postgres://u:sekrit@127.0.0.1:1/x",
        )
        .env("TESSERA__DATABASE__ACQUIRE_TIMEOUT", "1s")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.matches("pool timed out").count(),
        1,
        "the cause is given once: {err}"
    );
}

async fn unknown_config_key(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_user("alice", &[]);
    let before = t.snapshot();

    let misspelt = write(&t, "misspelt.toml", "[database]\nmax_conections = 4\n");
    let err = try_add_user(&t, &misspelt);
    assert!(err.contains("max_conections"), "names the key: {err}");
    assert!(err.contains("database"), "names the section: {err}");

    let section = write(&t, "section.toml", "[databse]\nurl = \"sqlite://x.db\"\n");
    let err = try_add_user(&t, &section);
    assert!(err.contains("databse"), "names the section: {err}");

    let top = write(&t, "top.toml", "verbose = true\n");
    let err = try_add_user(&t, &top);
    assert!(err.contains("verbose"), "names the key: {err}");

    // A known key with a value of the wrong type.
    let typed = write(&t, "typed.toml", "[database]\nmax_connections = \"lots\"\n");
    let err = try_add_user(&t, &typed);
    assert!(err.contains("max_connections"), "names the key: {err}");

    // An unknown key from the environment is named too.
    let out = t
        .cmd()
        .args(["user", "list"])
        .env("TESSERA__DATABASE__MAX_CONECTIONS", "4")
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_one_line_error(&err);
    assert!(err.contains("max_conections"), "names the key: {err}");

    assert_eq!(t.snapshot(), before);
}

async fn missing_config_file(backend: Backend) {
    let t = Tessera::new(backend).await;
    let before = t.snapshot();
    let missing = t.db.path().join("nope.toml");
    let err = try_add_user(&t, &missing);
    assert_eq!(
        err,
        format!(
            "error: configuration: config file {} does not exist\n",
            missing.display()
        )
    );
    assert_eq!(t.snapshot(), before);
}

async fn database_down_message_has_no_password(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_user("alice", &[]);
    let before = t.snapshot();
    for url in [
        "postgres://postgres@127.0.0.1:1/x",
        "postgres://u:sekrit@127.0.0.1:1/x",
        "postgres://u:sekrit@127.0.0.1:1/x?sslmode=disable",
        "postgres://u@127.0.0.1:1/x?password=sekrit",
    ] {
        for args in [
            vec!["user", "list"],
            vec!["user", "add", "mallory", "--password-stdin"],
            vec!["migrate"],
        ] {
            let out = t
                .cmd()
                .args(&args)
                .env("TESSERA__DATABASE__URL", url)
                .env("TESSERA__DATABASE__ACQUIRE_TIMEOUT", "1s")
                .write_stdin(format!("{PASSWORD}\n"))
                .output()
                .expect("runs");
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{url} {args:?}: {err}");
            assert_one_line_error(&err);
            assert!(!err.contains("sekrit"), "password leaked: {err}");
            assert!(err.contains("could not open the database"), "{err}");
            assert!(err.contains("127.0.0.1:1"), "names the server: {err}");
            assert!(out.stdout.is_empty());
        }
    }
    // A password parameter sqlx would not read (and would log, value and all, as it
    // connects) is refused before anything connects.
    let out = t
        .cmd()
        .args(["user", "list"])
        .env(
            "TESSERA__DATABASE__URL",
            "postgres://127.0.0.1:1/x?sslmode=disable&SslPassword=sekrit",
        )
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert_one_line_error(&err);
    assert!(!err.contains("sekrit"), "password leaked: {err}");
    assert!(err.contains("sslpassword"), "{err}");
    // The same through DATABASE_URL.
    let out = t
        .cmd()
        .args(["user", "list"])
        .env_remove("TESSERA__DATABASE__URL")
        .env("DATABASE_URL", "postgres://u:sekrit@127.0.0.1:1/x")
        .env("TESSERA__DATABASE__ACQUIRE_TIMEOUT", "1s")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_one_line_error(&err);
    assert!(!err.contains("sekrit"), "password leaked: {err}");
    assert_eq!(t.snapshot(), before);
}

async fn bad_database_url(backend: Backend) {
    let t = Tessera::new(backend).await;
    let before = t.snapshot();
    let out = t
        .cmd()
        .args(["user", "list"])
        .env("TESSERA__DATABASE__URL", "mysql://u:sekrit@localhost/x")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_one_line_error(&err);
    assert!(err.contains("postgres://"), "says what is accepted: {err}");
    assert!(!err.contains("sekrit"), "password leaked: {err}");
    assert_eq!(t.snapshot(), before);
}

async fn config_file_is_honoured(backend: Backend) {
    let t = Tessera::new(backend).await;
    // The file's policy applies (environment variables still win over it).
    let strict = write(&t, "strict.toml", "[passwords]\nmin_length = 30\n");
    let err = t.fail_stdin(
        with_config(&strict, &["user", "add", "bob", "--password-stdin"]),
        &format!("{PASSWORD}\n"),
        1,
    );
    assert_eq!(
        err,
        "error: password is too short: at least 30 characters\n"
    );
    assert!(t.users().is_empty());
    let out = t
        .cmd()
        .args(with_config(
            &strict,
            &["user", "add", "bob", "--password-stdin"],
        ))
        .env("TESSERA__PASSWORDS__MIN_LENGTH", "8")
        .write_stdin(format!("{PASSWORD}\n"))
        .output()
        .expect("runs");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(t.usernames(), ["bob"]);
}

async fn migrate_and_gc(backend: Backend) {
    let t = Tessera::new(backend).await;
    assert_eq!(t.ok(["migrate"]), "migrations applied\n");
    assert_eq!(t.ok(["migrate"]), "migrations applied\n", "idempotent");
    t.add_user("alice", &[]);
    let out = t.ok(["gc"]);
    assert!(out.starts_with("deleted "), "{out}");
    assert!(out.contains("0 refresh families"), "{out}");
    assert_eq!(t.usernames(), ["alice"]);
    assert_eq!(t.audit().len(), 1, "recent audit rows survive gc");
}

crate::both_backends!(
    config_file_that_does_not_parse,
    error_messages_are_not_repeated,
    unknown_config_key,
    missing_config_file,
    database_down_message_has_no_password,
    bad_database_url,
    config_file_is_honoured,
    migrate_and_gc,
);
