//! A database a previous release filled, upgraded in place by `tessera migrate`: the rows it
//! held read back the same, with the new columns at their defaults.

use std::path::Path;

use sqlx::migrate::Migrator;
use sqlx::{AnyConnection, Connection};

use crate::common::Backend;
use crate::{Tessera, strings};

/// The migrations of `backend` numbered below `before`, as the release before them shipped.
async fn migrate_to_before(t: &Tessera, before: i64) {
    let tree = match t.db.backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    let dir = t.db.path().join("old-migrations");
    std::fs::create_dir_all(&dir).expect("dir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(tree);
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let number: i64 = name[..4].parse().expect("numbered");
        if number < before {
            std::fs::copy(&path, dir.join(&name)).expect("copy");
        }
    }
    sqlx::any::install_default_drivers();
    let url = match t.db.backend {
        Backend::Sqlite => format!("{}?mode=rwc", t.db.url),
        Backend::Postgres => t.db.url.clone(),
    };
    let mut conn = AnyConnection::connect(&url).await.expect("connect");
    Migrator::new(dir.as_path())
        .await
        .expect("old migrations")
        .run(&mut conn)
        .await
        .expect("old schema");
    // A client as the previous release wrote it.
    // Public (no secret hash), which keeps the literal the same on both backends.
    sqlx::query(
        "INSERT INTO clients (client_id, name, secret_hash, grant_types, scopes, audiences, \
         access_ttl, introspect, created_at, updated_at) \
         VALUES ('gateway', 'Gateway', NULL, 'refresh_token', 'read write', '', \
         300, 0, 1700000000, 1700000000)",
    )
    .execute(&mut conn)
    .await
    .expect("old client");
    sqlx::query(
        "INSERT INTO users (id, username, username_normalized, password_hash, disabled, \
         created_at, updated_at, password_changed_at) \
         VALUES ('7c0a4a4e-3c4e-4d7e-9a53-3f1f6b1f0a11', 'Carol', 'carol', '$argon2id$old', 0, \
         1700000000, 1700000000, 1700000000)",
    )
    .execute(&mut conn)
    .await
    .expect("old user");
    conn.close().await.expect("close");
}

async fn new_columns_come_with_defaults(backend: Backend) {
    let t = Tessera::new(backend).await;
    migrate_to_before(&t, 4).await;
    t.ok(["migrate"]);
    let client = t.json(["client", "show", "gateway", "--json"]);
    assert_eq!(client["name"], "Gateway");
    assert_eq!(strings(&client["grant_types"]), ["refresh_token"]);
    assert_eq!(strings(&client["scopes"]), ["read", "write"]);
    assert_eq!(client["access_token_ttl"], 300);
    assert_eq!(client["introspect"], false);
    assert_eq!(client["public"], true);
    assert_eq!(strings(&client["redirect_uris"]), Vec::<String>::new());
    assert_eq!(
        strings(&client["post_logout_redirect_uris"]),
        Vec::<String>::new()
    );
    assert_eq!(client["first_party"], false);
    let carol = t.json(["user", "show", "carol", "--json"]);
    assert_eq!(carol["username"], "Carol");
    assert_eq!(carol["email"], serde_json::Value::Null);
    assert_eq!(carol["email_verified"], false);
    assert_eq!(carol["name"], serde_json::Value::Null);
    let carol = t.json(["user", "update", "carol", "--name", "Carol", "--json"]);
    assert_eq!(carol["name"], "Carol");
    // And the upgraded row takes the new columns.
    let updated = t.json([
        "client",
        "update",
        "gateway",
        "--redirect-uri",
        "https://gw.example.com/cb",
        "--json",
    ]);
    assert_eq!(
        strings(&updated["redirect_uris"]),
        ["https://gw.example.com/cb"]
    );
    t.ok(["migrate"]);
}

crate::both_backends!(new_columns_come_with_defaults);
