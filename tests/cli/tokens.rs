//! `tessera token ...`: with no sessions, and with real ones made by a running `tessera serve`.

use serde_json::Value;

use crate::common::Backend;
use crate::common::http::{http_client, login_as};
use crate::common::server::Server;
use crate::{PASSWORD, Tessera, actor, array, str_field};

async fn user_without_sessions(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_user("alice", &[]);
    t.ok(["client", "add", "app", "--grant", "password"]);

    assert!(array(t.json(["token", "list", "--user", "alice", "--json"])).is_empty());
    let table = t.ok(["token", "list", "--user", "alice"]);
    assert_eq!(table.lines().count(), 1, "only the header: {table}");
    assert!(table.starts_with("FAMILY"), "{table}");

    let out = t.ok(["token", "revoke", "--user", "alice"]);
    assert_eq!(out, "0 session(s) of alice revoked\n");
    let out = t.ok(["token", "revoke", "--user", "ALICE", "--client", "app"]);
    assert_eq!(out, "0 session(s) of alice revoked\n");
    let out = t.ok(["token", "revoke", "--client", "app"]);
    assert_eq!(out, "0 session(s) of client app revoked\n");

    let rows = t.audit();
    let revokes: Vec<&Value> = rows
        .iter()
        .filter(|r| r["action"] == "token.revoke")
        .collect();
    assert_eq!(revokes.len(), 3, "{rows:?}");
    for row in &revokes {
        assert_eq!(row["actor"], actor());
        assert_eq!(row["details"]["families_revoked"], 0);
    }
    assert_eq!(revokes[1]["user"], "alice");
    assert_eq!(revokes[1]["client"], "app");
}

async fn token_errors(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_user("alice", &[]);
    let before = t.snapshot();

    let err = t.fail(["token", "list", "--user", "ghost"], 1);
    assert_eq!(err, "error: user ghost does not exist\n");
    let err = t.fail(["token", "revoke", "--user", "ghost"], 1);
    assert_eq!(err, "error: user ghost does not exist\n");
    let err = t.fail(
        ["token", "revoke", "--user", "alice", "--client", "ghost"],
        1,
    );
    assert_eq!(err, "error: client ghost does not exist\n");
    let err = t.fail(["token", "revoke", "--client", "ghost"], 1);
    assert_eq!(err, "error: client ghost does not exist\n");
    let err = t.fail(["token", "revoke", "--family", "no-such-family"], 1);
    assert_eq!(err, "error: no live family no-such-family\n");

    // Usage errors: exit 2.
    let err = t.fail(["token", "revoke"], 2);
    assert!(err.contains("--user"), "{err}");
    let err = t.fail(["token", "revoke", "--user", "alice", "--family", "x"], 2);
    assert!(err.contains("--family"), "{err}");
    t.fail(["token", "list"], 2);

    assert_eq!(t.snapshot(), before);
}

/// `tessera serve` on the test's database, ready.
async fn serve(t: &Tessera) -> Server {
    let mut server = Server::start_on(
        &t.db.path(),
        &t.db.url,
        &[
            ("TESSERA__SERVER__WORKERS", "1"),
            ("TESSERA__LOG__LEVEL", "warn"),
        ],
    );
    server.wait_ready(&http_client()).await;
    server
}

/// Logs `username` in with the password grant; returns the token response.
async fn login(server: &Server, client_id: &str, secret: &str, username: &str) -> Value {
    let body = login_as(
        &http_client(),
        &server.base(),
        (client_id, secret),
        username,
        PASSWORD,
    )
    .await
    .body;
    assert!(body["refresh_token"].is_string(), "{body}");
    body
}

#[track_caller]
fn sessions(t: &Tessera, user: &str) -> Vec<Value> {
    array(t.json(["token", "list", "--user", user, "--json"]))
}

async fn list_and_revoke_real_sessions(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.add_user("alice", &[]);
    t.add_user("bob", &[]);
    let mut secrets = Vec::new();
    for client in ["web", "cli"] {
        let added = t.json([
            "client",
            "add",
            client,
            "--grant",
            "password",
            "--grant",
            "refresh_token",
            "--json",
        ]);
        secrets.push(str_field(&added, "client_secret").to_owned());
    }
    let server = serve(&t).await;

    let token = login(&server, "web", &secrets[0], "alice").await;
    login(&server, "cli", &secrets[1], "alice").await;
    login(&server, "cli", &secrets[1], "alice").await;
    login(&server, "web", &secrets[0], "bob").await;

    let live = sessions(&t, "alice");
    assert_eq!(live.len(), 3, "{live:?}");
    for session in &live {
        for field in ["family_id", "client_id", "created", "last_used", "expires"] {
            assert!(
                session.get(field).is_some(),
                "{field} missing from {session}"
            );
        }
    }
    let listing = t.ok(["token", "list", "--user", "alice"]);
    let refresh = str_field(&token, "refresh_token");
    assert!(!listing.contains(refresh), "token values are never shown");
    assert!(
        !t.ok(["token", "list", "--user", "alice", "--json"])
            .contains(refresh)
    );

    // One family.
    let web_family = live
        .iter()
        .find(|s| s["client_id"] == "web")
        .map(|s| str_field(s, "family_id").to_owned())
        .expect("a web session");
    let out = t.ok(["token", "revoke", "--family", &web_family]);
    assert_eq!(out, format!("family {web_family} revoked\n"));
    let live = sessions(&t, "alice");
    assert_eq!(live.len(), 2);
    assert!(live.iter().all(|s| s["client_id"] == "cli"));
    let err = t.fail(["token", "revoke", "--family", &web_family], 1);
    assert_eq!(err, format!("error: no live family {web_family}\n"));

    // A user with one client: bob's session with web stays.
    let out = t.ok(["token", "revoke", "--user", "alice", "--client", "cli"]);
    assert_eq!(out, "2 session(s) of alice revoked\n");
    assert!(sessions(&t, "alice").is_empty());
    assert_eq!(sessions(&t, "bob").len(), 1);

    // A whole client.
    let out = t.ok(["token", "revoke", "--client", "web"]);
    assert_eq!(out, "1 session(s) of client web revoked\n");
    assert!(sessions(&t, "bob").is_empty());

    // Disabling a user and changing a password end their sessions.
    login(&server, "web", &secrets[0], "alice").await;
    login(&server, "cli", &secrets[1], "bob").await;
    assert_eq!(sessions(&t, "alice").len(), 1);
    t.ok(["user", "disable", "alice"]);
    assert!(sessions(&t, "alice").is_empty());
    assert_eq!(sessions(&t, "bob").len(), 1);
    t.ok_stdin(
        ["user", "set-password", "bob", "--password-stdin"],
        &format!("{PASSWORD}!\n"),
    );
    assert!(sessions(&t, "bob").is_empty());

    // Deleting a client ends its sessions as well.
    t.ok(["user", "enable", "alice"]);
    login(&server, "web", &secrets[0], "alice").await;
    assert_eq!(sessions(&t, "alice").len(), 1);
    t.ok(["client", "delete", "web"]);
    assert!(sessions(&t, "alice").is_empty());
    drop(server);
}

crate::both_backends!(
    user_without_sessions,
    token_errors,
    list_and_revoke_real_sessions
);
