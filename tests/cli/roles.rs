//! `tessera role ...`

use crate::common::Backend;
use crate::{Tessera, assert_timestamp, str_field, strings};

async fn add_and_list_with_documented_fields(backend: Backend) {
    let t = Tessera::new(backend).await;
    let out = t.ok(["role", "add", "admin", "--description", "Full access"]);
    assert_eq!(out, "role admin created\n");
    t.add_role("viewer");
    t.add_user("alice", &["admin", "viewer"]);
    t.add_user("bob", &["viewer"]);

    let roles = t.roles();
    assert_eq!(roles.len(), 2, "{roles:?}");
    for role in &roles {
        let obj = role.as_object().expect("an object");
        for field in ["name", "description", "members", "created_at"] {
            assert!(obj.contains_key(field), "{field} missing from {role}");
        }
        assert_timestamp(role, "created_at");
    }
    let admin = roles.iter().find(|r| r["name"] == "admin").expect("admin");
    assert_eq!(str_field(admin, "description"), "Full access");
    assert_eq!(admin["members"], 1);
    let viewer = roles
        .iter()
        .find(|r| r["name"] == "viewer")
        .expect("viewer");
    assert_eq!(str_field(viewer, "description"), "");
    assert_eq!(viewer["members"], 2);

    let table = t.ok(["role", "list"]);
    assert!(table.starts_with("ROLE"), "{table}");
    assert!(table.contains("Full access"), "{table}");
}

async fn duplicate_and_invalid_role_names_are_refused(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_role("admin");
    let before = t.snapshot();
    let err = t.fail(["role", "add", "admin"], 1);
    assert_eq!(err, "error: role admin already exists\n");
    let long = "r".repeat(65);
    for bad in ["", "has space", "semi;colon", "quote'", long.as_str(), "é"] {
        let err = t.fail(["role", "add", bad], 1);
        assert!(err.contains("role names are"), "{bad:?}: {err}");
    }
    let err = t.fail(["role", "add", "ok", "--description", "line\nbreak"], 1);
    assert!(err.contains("control characters"), "{err}");
    assert_eq!(t.snapshot(), before);
}

async fn delete_refuses_while_assigned_unless_forced(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_role("ops");
    t.add_role("unused");
    t.add_user("alice", &["ops"]);
    t.add_user("bob", &["ops"]);

    // An unassigned role goes without --force.
    let out = t.ok(["role", "delete", "unused"]);
    assert!(out.contains("role unused deleted"), "{out}");

    let before = t.snapshot();
    let err = t.fail(["role", "delete", "ops"], 1);
    assert!(err.contains("--force"), "{err}");
    assert!(err.contains("2 user(s)"), "{err}");
    assert_eq!(t.snapshot(), before, "a refused delete changes nothing");
    assert_eq!(strings(&t.user("alice")["roles"]), ["ops"]);

    let out = t.ok(["role", "delete", "ops", "--force"]);
    assert!(
        out.contains("role ops deleted (2 assignment(s) removed)"),
        "{out}"
    );
    assert!(t.roles().is_empty());
    assert!(strings(&t.user("alice")["roles"]).is_empty());
    assert!(strings(&t.user("bob")["roles"]).is_empty());

    let err = t.fail(["role", "delete", "ops"], 1);
    assert_eq!(err, "error: role ops does not exist\n");
    let err = t.fail(["role", "delete", "ops", "--force"], 1);
    assert_eq!(err, "error: role ops does not exist\n");
}

crate::both_backends!(
    add_and_list_with_documented_fields,
    duplicate_and_invalid_role_names_are_refused,
    delete_refuses_while_assigned_unless_forced,
);
