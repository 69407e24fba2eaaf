//! Every admin change writes an audit row naming `cli:<os user>` (and the name `--actor` gives);
//! `tessera audit` reads them.

use serde_json::Value;

use crate::common::Backend;
use crate::{PASSWORD, Tessera, actions, actor, array, assert_timestamp};

async fn every_change_is_audited_with_the_cli_actor(backend: Backend) {
    let t = Tessera::new(backend).await;
    let pw = format!("{PASSWORD}\n");
    t.ok(["role", "add", "ops", "--description", "operators"]);
    t.add_role("dev");
    t.ok_stdin(
        ["user", "add", "alice", "--role", "ops", "--password-stdin"],
        &pw,
    );
    t.ok(["user", "grant", "alice", "dev"]);
    t.ok(["user", "revoke", "alice", "dev"]);
    t.ok(["user", "disable", "alice"]);
    t.ok(["user", "enable", "alice"]);
    t.ok_stdin(
        ["user", "set-password", "alice", "--password-stdin"],
        "a brand new password\n",
    );
    t.ok(["client", "add", "app", "--grant", "password"]);
    t.ok(["client", "update", "app", "--scope", "read"]);
    t.ok(["client", "rotate-secret", "app"]);
    t.ok(["token", "revoke", "--user", "alice"]);
    t.ok(["client", "delete", "app"]);
    t.ok(["role", "delete", "ops", "--force"]);
    t.ok(["user", "delete", "alice"]);
    t.ok(["role", "delete", "dev"]);

    let rows = t.audit();
    let mut got = actions(&rows);
    got.reverse();
    assert_eq!(
        got,
        [
            "role.add",
            "role.add",
            "user.add",
            "user.grant",
            "user.revoke",
            "user.disable",
            "user.enable",
            "user.set_password",
            "client.add",
            "client.update",
            "client.rotate_secret",
            "token.revoke",
            "client.delete",
            "role.delete",
            "user.delete",
            "role.delete",
        ]
    );
    for row in &rows {
        assert_eq!(row["actor"], actor(), "{row}");
        assert_eq!(row["outcome"], "success", "{row}");
        assert_timestamp(row, "time");
        for field in ["id", "target", "user", "client", "details"] {
            assert!(row.get(field).is_some(), "{field} missing from {row}");
        }
    }
    let find = |action: &str| -> &Value {
        rows.iter()
            .rev()
            .find(|r| r["action"] == action)
            .expect("audited")
    };
    assert_eq!(find("user.add")["target"], "alice");
    assert_eq!(find("user.add")["user"], "alice");
    assert_eq!(
        find("user.add")["details"]["roles"],
        serde_json::json!(["ops"])
    );
    assert_eq!(find("role.add")["target"], "ops");
    assert_eq!(find("client.add")["client"], "app");
    assert_eq!(find("user.grant")["details"]["role"], "dev");
    assert_eq!(find("role.delete")["details"]["force"], true);
    let text = rows.iter().map(Value::to_string).collect::<String>();
    assert!(
        !text.contains(PASSWORD) && !text.contains("brand new"),
        "no passwords"
    );
    assert!(!text.contains("tsc_"), "no client secrets");

    // Reads write nothing.
    t.ok(["user", "list"]);
    t.ok(["role", "list", "--json"]);
    t.ok(["client", "list"]);
    t.ok(["audit"]);
    assert_eq!(t.audit(), rows);
}

/// The OS user comes from the process, not from `$USER` or `$LOGNAME` (unset in containers and
/// under systemd, and anyone's to set); a name given with `--actor` or `TESSERA_ACTOR` is
/// recorded beside it.
async fn actor_is_the_os_user_of_the_process(backend: Backend) {
    let t = Tessera::new(backend).await;
    let os = actor();
    let run = |cmd: &mut assert_cmd::Command| {
        let out = cmd.output().expect("runs");
        assert!(out.status.success(), "{out:?}");
    };
    run(t
        .cmd()
        .args(["role", "add", "a"])
        .env_remove("USER")
        .env_remove("LOGNAME"));
    run(t.cmd().args(["role", "add", "b"]).env("USER", "ops-bob"));
    run(t
        .cmd()
        .args(["role", "add", "c"])
        .env("LOGNAME", "logname-carol"));
    run(t
        .cmd()
        .args(["role", "add", "d", "--actor", "deploy-bot"])
        .env_remove("USER"));
    run(t
        .cmd()
        .args(["role", "add", "e"])
        .env_remove("USER")
        .env("TESSERA_ACTOR", "nightly job #42"));
    // The flag wins over the environment.
    run(t
        .cmd()
        .args(["--actor", "alice-at-laptop", "role", "add", "f"])
        .env("TESSERA_ACTOR", "ci"));
    let mut rows = t.audit();
    rows.reverse();
    let actors: Vec<&str> = rows
        .iter()
        .map(|r| r["actor"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        actors,
        [
            os.clone(),
            os.clone(),
            os.clone(),
            format!("{os} (as deploy-bot)"),
            format!("{os} (as nightly job #42)"),
            format!("{os} (as alice-at-laptop)"),
        ]
    );
    assert!(!os.contains("unknown") && !os.contains("tester"), "{os}");

    // Names that are blank, too long or carry control characters are usage errors, and
    // nothing is written.
    let before = t.audit();
    for bad in ["", "  ", "two\nlines", "\u{1b}[31mred", &"x".repeat(65)] {
        let err = t.fail(["role", "add", "g", "--actor", bad], 2);
        assert!(err.contains("--actor (or TESSERA_ACTOR)"), "{err}");
        let out = t
            .cmd()
            .args(["role", "add", "g"])
            .env("TESSERA_ACTOR", bad)
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
    }
    assert_eq!(t.audit(), before);
}

async fn refused_changes_write_no_rows(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_role("ops");
    t.add_user("alice", &["ops"]);
    let before = t.audit();
    t.fail_stdin(
        ["user", "add", "bob", "--role", "x", "--password-stdin"],
        &format!("{PASSWORD}\n"),
        1,
    );
    t.fail_stdin(
        ["user", "add", "ALICE", "--password-stdin"],
        &format!("{PASSWORD}\n"),
        1,
    );
    t.fail_stdin(["user", "add", "carol", "--password-stdin"], "short\n", 1);
    t.fail(["role", "delete", "ops"], 1);
    t.fail(["role", "add", "ops"], 1);
    t.fail(["user", "grant", "alice", "ops"], 1);
    t.fail(["client", "add", "c", "--grant", "nope"], 1);
    assert_eq!(t.audit(), before);
}

async fn filters(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_role("ops");
    t.add_user("alice", &[]);
    t.add_user("bob", &[]);
    t.ok(["user", "grant", "bob", "ops"]);
    t.ok(["client", "add", "app", "--grant", "password"]);

    let by_user = array(t.json(["audit", "--user", "bob", "--json"]));
    assert_eq!(actions(&by_user), ["user.grant", "user.add"]);
    let by_action = array(t.json(["audit", "--action", "user.add", "--json"]));
    assert_eq!(by_action.len(), 2);
    assert_eq!(by_action[0]["target"], "bob", "newest first");
    assert_eq!(by_action[1]["target"], "alice");
    let by_client = array(t.json(["audit", "--client", "app", "--json"]));
    assert_eq!(actions(&by_client), ["client.add"]);
    let limited = array(t.json(["audit", "--limit", "2", "--json"]));
    assert_eq!(actions(&limited), ["client.add", "user.grant"]);
    assert_eq!(array(t.json(["audit", "--since", "1h", "--json"])).len(), 5);
    assert_eq!(
        array(t.json(["audit", "--since", "2999-01-01T00:00:00Z", "--json"])).len(),
        0
    );
    assert_eq!(
        array(t.json(["audit", "--since", "2000-01-01T00:00:00Z", "--json"])).len(),
        5
    );
    let table = t.ok(["audit", "--action", "client.add"]);
    assert!(table.starts_with("TIME"), "{table}");
    assert!(table.contains(&actor()), "{table}");

    let err = t.fail(["audit", "--since", "yesterday-ish"], 2);
    assert!(err.contains("--since"), "{err}");
    t.fail(["audit", "--limit", "-3"], 2);
    t.fail(["audit", "--limit", "lots"], 2);
}

crate::both_backends!(
    every_change_is_audited_with_the_cli_actor,
    actor_is_the_os_user_of_the_process,
    refused_changes_write_no_rows,
    filters,
);
