//! `tessera user ...`: the happy paths and their visible outcomes.

use crate::common::Backend;
use crate::{PASSWORD, Tessera, assert_timestamp, str_field, strings};

async fn add_shows_user_with_roles_and_documented_fields(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_role("admin");
    t.add_role("viewer");
    let out = t.ok_stdin(
        [
            "user",
            "add",
            "alice",
            "--role",
            "viewer",
            "--role",
            "admin",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.starts_with("user alice created (id "), "{out}");

    let user = t.user("alice");
    let obj = user.as_object().expect("an object");
    for field in [
        "id",
        "username",
        "disabled",
        "roles",
        "created_at",
        "updated_at",
        "password_changed_at",
    ] {
        assert!(obj.contains_key(field), "{field} missing from {user}");
    }
    assert!(!obj.contains_key("password_hash"), "{user}");
    assert!(!user.to_string().contains("argon2"), "{user}");
    assert_eq!(str_field(&user, "username"), "alice");
    assert_eq!(user["disabled"], false);
    assert_eq!(strings(&user["roles"]), ["admin", "viewer"]);
    let id = str_field(&user, "id");
    uuid::Uuid::parse_str(id).expect("id is a UUID");
    assert!(out.contains(id), "add prints the id: {out}");
    for field in ["created_at", "updated_at", "password_changed_at"] {
        assert_timestamp(&user, field);
    }

    // The same record in the list.
    let users = t.users();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0], user);

    // The table forms name the user too.
    let table = t.ok(["user", "list"]);
    assert!(table.starts_with("USERNAME"), "{table}");
    assert!(
        table.contains("alice") && table.contains("admin,viewer"),
        "{table}"
    );
    let shown = t.ok(["user", "show", "alice"]);
    assert!(
        shown.contains("alice") && shown.contains("enabled"),
        "{shown}"
    );
}

async fn add_disabled_and_toggle(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.ok_stdin(
        ["user", "add", "bob", "--disabled", "--password-stdin"],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(t.user("bob")["disabled"], true);

    let out = t.ok(["user", "enable", "bob"]);
    assert!(out.contains("bob enabled"), "{out}");
    assert_eq!(t.user("bob")["disabled"], false);

    let out = t.ok(["user", "disable", "bob"]);
    assert!(out.contains("bob disabled"), "{out}");
    assert_eq!(t.user("bob")["disabled"], true);
    assert!(t.ok(["user", "list"]).contains("disabled"));

    t.ok(["user", "enable", "bob"]);
    assert_eq!(t.user("bob")["disabled"], false);
}

async fn lookups_ignore_case(backend: Backend) {
    let t = Tessera::new(backend).await;
    let alice = t.add_user("Alice", &[]);
    let shown = t.user("ALICE");
    assert_eq!(shown, alice);
    // The name keeps the case it was created with.
    assert_eq!(str_field(&shown, "username"), "Alice");
    t.ok(["user", "disable", "aLiCe"]);
    assert_eq!(t.user("alice")["disabled"], true);
}

async fn grant_and_revoke_roles(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_role("ops");
    t.add_role("dev");
    t.add_user("carol", &[]);
    assert!(strings(&t.user("carol")["roles"]).is_empty());

    let out = t.ok(["user", "grant", "carol", "ops"]);
    assert!(out.contains("role ops granted to carol"), "{out}");
    t.ok(["user", "grant", "carol", "dev"]);
    assert_eq!(strings(&t.user("carol")["roles"]), ["dev", "ops"]);

    // Granting twice is a clean error and changes nothing.
    let err = t.fail(["user", "grant", "carol", "ops"], 1);
    assert!(err.contains("already has role ops"), "{err}");
    assert_eq!(strings(&t.user("carol")["roles"]), ["dev", "ops"]);

    // A role that does not exist.
    let err = t.fail(["user", "grant", "carol", "nope"], 1);
    assert_eq!(
        err,
        "error: role nope does not exist; create it with `tessera role add nope`\n"
    );

    let out = t.ok(["user", "revoke", "carol", "ops"]);
    assert!(out.contains("role ops revoked from carol"), "{out}");
    assert_eq!(strings(&t.user("carol")["roles"]), ["dev"]);

    let err = t.fail(["user", "revoke", "carol", "ops"], 1);
    assert!(err.contains("does not have role ops"), "{err}");
    assert_eq!(strings(&t.user("carol")["roles"]), ["dev"]);
}

async fn set_password(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_user("dave", &[]);
    let out = t.ok_stdin(
        ["user", "set-password", "dave", "--password-stdin"],
        "another good password\n",
    );
    assert!(out.contains("password of dave changed"), "{out}");
    let rows = t.audit();
    assert_eq!(rows[0]["action"], "user.set_password");
    assert_eq!(rows[0]["user"], "dave");
    assert!(
        !rows.iter().any(|r| r.to_string().contains("another good")),
        "the password is never audited"
    );

    // Unknown user: refused before any password is read.
    let err = t.fail_stdin(
        ["user", "set-password", "nobody", "--password-stdin"],
        "another good password\n",
        1,
    );
    assert!(err.contains("user nobody does not exist"), "{err}");
}

async fn delete_user(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_role("ops");
    t.add_user("erin", &["ops"]);
    t.add_user("frank", &[]);
    let out = t.ok(["user", "delete", "erin"]);
    assert!(out.contains("user erin deleted"), "{out}");
    assert_eq!(t.usernames(), ["frank"]);
    let err = t.fail(["user", "show", "erin"], 1);
    assert_eq!(err, "error: user erin does not exist\n");
    // Its role assignments went with it.
    assert_eq!(t.roles()[0]["members"], 0);

    let err = t.fail(["user", "delete", "erin"], 1);
    assert!(err.contains("does not exist"), "{err}");

    // The name is free again, under a new id.
    let old_id = t.audit()[0]["details"]["id"].clone();
    let again = t.add_user("erin", &[]);
    assert_ne!(again["id"], old_id);
    assert!(strings(&again["roles"]).is_empty());
}

async fn missing_user_is_one_line_error(backend: Backend) {
    let t = Tessera::new(backend).await;
    for args in [
        vec!["user", "show", "ghost"],
        vec!["user", "disable", "ghost"],
        vec!["user", "enable", "ghost"],
        vec!["user", "delete", "ghost"],
        vec!["user", "grant", "ghost", "r"],
        vec!["user", "revoke", "ghost", "r"],
    ] {
        let err = t.fail(&args, 1);
        assert_eq!(err, "error: user ghost does not exist\n", "{args:?}");
    }
    assert!(t.users().is_empty());
    assert!(t.audit().is_empty());
}

async fn list_is_sorted_case_insensitively(backend: Backend) {
    let t = Tessera::new(backend).await;
    for name in ["bob", "Alice", "carol"] {
        t.add_user(name, &[]);
    }
    assert_eq!(t.usernames(), ["Alice", "bob", "carol"]);
}

async fn email_and_name_are_set_checked_and_audited(backend: Backend) {
    let t = Tessera::new(backend).await;
    let out = t.ok_stdin(
        [
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--email",
            "alice@example.com",
            "--email-verified",
            "--name",
            "Alice Liddell",
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.contains("user alice created"), "{out}");
    let alice = t.user("alice");
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["email_verified"], true);
    assert_eq!(alice["name"], "Alice Liddell");
    let text = t.ok(["user", "show", "alice"]);
    assert!(
        text.contains("email:               alice@example.com (verified)"),
        "{text}"
    );
    assert!(
        text.contains("name:                Alice Liddell"),
        "{text}"
    );
    assert_eq!(t.users()[0]["email"], "alice@example.com");

    // Without them: null, unverified.
    let bob = t.add_user("bob", &[]);
    assert_eq!(bob["email"], serde_json::Value::Null);
    assert_eq!(bob["email_verified"], false);
    assert_eq!(bob["name"], serde_json::Value::Null);

    // A new address is unverified until said so; what is not given stays.
    let updated = t.json([
        "user",
        "update",
        "alice",
        "--email",
        "a@example.org",
        "--json",
    ]);
    assert_eq!(updated["email"], "a@example.org");
    assert_eq!(updated["email_verified"], false);
    assert_eq!(updated["name"], "Alice Liddell");
    let updated = t.json([
        "user",
        "update",
        "ALICE",
        "--email-verified",
        "true",
        "--no-name",
        "--json",
    ]);
    assert_eq!(updated["email_verified"], true);
    assert_eq!(updated["name"], serde_json::Value::Null);
    assert_eq!(t.user("alice"), updated);
    let rows: Vec<serde_json::Value> = t
        .audit()
        .into_iter()
        .filter(|r| r["action"] == "user.update")
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["details"]["email_changed"], true);
    let raw = serde_json::to_string(&rows).expect("json");
    assert!(
        !raw.contains("a@example.org"),
        "the audit log does not copy the address: {raw}"
    );

    let before = t.snapshot();
    for (args, why) in [
        (
            vec!["user", "update", "alice", "--email", "not-an-address"],
            "is not an email address",
        ),
        (
            vec!["user", "update", "alice", "--email", "a b@example.com"],
            "is not an email address",
        ),
        (
            vec!["user", "update", "alice", "--email", "@example.com"],
            "is not an email address",
        ),
        (
            vec!["user", "update", "bob", "--email-verified", "true"],
            "--email-verified needs an email",
        ),
        (
            vec!["user", "update", "alice", "--name", ""],
            "name must be 1 to 200 characters",
        ),
        (
            vec!["user", "update", "alice", "--name", "a\u{7}b"],
            "without control or invisible formatting characters",
        ),
        (
            vec!["user", "update", "alice", "--name", "Al\u{202e}ice"],
            "invisible formatting characters",
        ),
        (
            vec![
                "user",
                "update",
                "alice",
                "--email",
                "al\u{ed}ce@example.com",
            ],
            "is not an email address",
        ),
        (
            vec!["user", "update", "ghost", "--name", "x"],
            "user ghost does not exist",
        ),
    ] {
        let err = t.fail(args.clone(), 1);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let err = t.fail(
        ["user", "update", "alice", "--email", "x@y", "--no-email"],
        2,
    );
    assert!(err.contains("cannot be used with"), "{err}");
    assert_eq!(t.snapshot(), before, "nothing refused was stored");
    let cleared = t.json(["user", "update", "alice", "--no-email", "--json"]);
    assert_eq!(cleared["email"], serde_json::Value::Null);
    assert_eq!(cleared["email_verified"], false);
}

crate::both_backends!(
    email_and_name_are_set_checked_and_audited,
    add_shows_user_with_roles_and_documented_fields,
    add_disabled_and_toggle,
    lookups_ignore_case,
    grant_and_revoke_roles,
    set_password,
    delete_user,
    missing_user_is_one_line_error,
    list_is_sorted_case_insensitively,
);
