//! Every admin change writes an audit row naming `cli:<USER>`; `tessera audit` reads them.

use serde_json::Value;

use crate::common::Backend;
use crate::{ACTOR, PASSWORD, Tessera, actions, array, assert_timestamp};

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
        assert_eq!(row["actor"], ACTOR, "{row}");
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

async fn actor_follows_the_os_user(backend: Backend) {
    let t = Tessera::new(backend).await;
    let out = t
        .cmd()
        .args(["role", "add", "a"])
        .env("USER", "ops-bob")
        .output();
    assert!(out.expect("runs").status.success());
    let out = t
        .cmd()
        .args(["role", "add", "b"])
        .env_remove("USER")
        .env("LOGNAME", "logname-carol")
        .output();
    assert!(out.expect("runs").status.success());
    let rows = t.audit();
    assert_eq!(rows[1]["actor"], "cli:ops-bob");
    assert_eq!(rows[0]["actor"], "cli:logname-carol");
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
    assert!(table.contains(ACTOR), "{table}");

    let err = t.fail(["audit", "--since", "yesterday-ish"], 2);
    assert!(err.contains("--since"), "{err}");
    t.fail(["audit", "--limit", "-3"], 2);
    t.fail(["audit", "--limit", "lots"], 2);
}

crate::both_backends!(
    every_change_is_audited_with_the_cli_actor,
    actor_follows_the_os_user,
    refused_changes_write_no_rows,
    filters,
);
