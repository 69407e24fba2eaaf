//! `tessera client ...`

use serde_json::Value;

use crate::common::Backend;
use crate::{Tessera, assert_one_line_error, assert_timestamp, str_field, strings};

const CLIENT_FIELDS: [&str; 13] = [
    "client_id",
    "name",
    "public",
    "grant_types",
    "scopes",
    "audiences",
    "introspect",
    "access_token_ttl",
    "redirect_uris",
    "post_logout_redirect_uris",
    "first_party",
    "created_at",
    "updated_at",
];

#[track_caller]
fn assert_client_fields(client: &Value) {
    let obj = client.as_object().expect("an object");
    for field in CLIENT_FIELDS {
        assert!(obj.contains_key(field), "{field} missing from {client}");
    }
    assert_timestamp(client, "created_at");
    assert_timestamp(client, "updated_at");
}

#[track_caller]
fn secret_of(client: &Value) -> String {
    let secret = str_field(client, "client_secret").to_owned();
    assert!(secret.starts_with("tsc_"), "{secret}");
    assert!(secret.len() > 40, "256 random bits: {secret}");
    secret
}

async fn add_confidential_client_json(backend: Backend) {
    let t = Tessera::new(backend).await;
    let added = t.json([
        "client",
        "add",
        "gateway",
        "--name",
        "API gateway",
        "--grant",
        "password",
        "--grant",
        "refresh_token",
        "--grant",
        "password",
        "--scope",
        "read",
        "--scope",
        "write",
        "--audience",
        "https://api.example.com",
        "--introspect",
        "--access-ttl",
        "5m",
        "--json",
    ]);
    assert_client_fields(&added);
    assert_eq!(str_field(&added, "client_id"), "gateway");
    assert_eq!(str_field(&added, "name"), "API gateway");
    assert_eq!(added["public"], false);
    assert_eq!(
        strings(&added["grant_types"]),
        ["password", "refresh_token"]
    );
    assert_eq!(strings(&added["scopes"]), ["read", "write"]);
    assert_eq!(strings(&added["audiences"]), ["https://api.example.com"]);
    assert_eq!(added["introspect"], true);
    assert_eq!(added["access_token_ttl"], 300);
    let secret = secret_of(&added);

    // show and list never carry the secret.
    let shown = t.json(["client", "show", "gateway", "--json"]);
    assert_client_fields(&shown);
    assert!(shown.get("client_secret").is_none(), "{shown}");
    assert!(!shown.to_string().contains(&secret));
    let mut without_secret = added.clone();
    without_secret
        .as_object_mut()
        .expect("object")
        .remove("client_secret");
    assert_eq!(shown, without_secret);

    let listed = t.clients();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("client_secret").is_none(), "{listed:?}");
    assert_eq!(listed[0], shown);

    let table = t.ok(["client", "list"]);
    assert!(
        table.contains("gateway") && table.contains("confidential"),
        "{table}"
    );
    assert!(!table.contains(&secret));
    let text = t.ok(["client", "show", "gateway"]);
    assert!(text.contains("access ttl:   300s"), "{text}");
    assert!(!text.contains(&secret));
    assert!(!t.audit().iter().any(|r| r.to_string().contains(&secret)));
}

async fn add_text_output_shows_secret_once(backend: Backend) {
    let t = Tessera::new(backend).await;
    let out = t.ok(["client", "add", "svc", "--grant", "client_credentials"]);
    assert!(out.contains("client_secret: tsc_"), "{out}");
    assert!(out.contains("not shown again"), "{out}");
    let shown = t.json(["client", "show", "svc", "--json"]);
    assert_eq!(shown["access_token_ttl"], Value::Null);
    assert_eq!(shown["introspect"], false);
    assert_eq!(shown["name"], "");
    assert!(!t.ok(["client", "show", "svc"]).contains("tsc_"));
}

async fn public_client_has_no_secret(backend: Backend) {
    let t = Tessera::new(backend).await;
    let added = t.json([
        "client",
        "add",
        "spa",
        "--public",
        "--grant",
        "refresh_token",
        "--json",
    ]);
    assert_client_fields(&added);
    assert_eq!(added["public"], true);
    assert!(added.get("client_secret").is_none(), "{added}");
    let text = t.ok(["client", "show", "spa"]);
    assert!(text.contains("public"), "{text}");

    let before = t.snapshot();
    let err = t.fail(["client", "rotate-secret", "spa"], 1);
    assert_eq!(err, "error: client spa is public and has no secret\n");
    // A public client may not use client_credentials.
    let err = t.fail(
        [
            "client",
            "add",
            "spa2",
            "--public",
            "--grant",
            "client_credentials",
        ],
        1,
    );
    assert!(
        err.contains("public client cannot use client_credentials"),
        "{err}"
    );
    // Nor the password grant (RFC 9700 §2.4), asked for at registration or added later.
    let refused: [&[&str]; 2] = [
        &["client", "add", "spa2", "--public", "--grant", "password"],
        &[
            "client",
            "update",
            "spa",
            "--grant",
            "refresh_token",
            "--grant",
            "password",
        ],
    ];
    for args in refused {
        assert_eq!(
            t.fail(args, 1),
            "error: a public client cannot use the password grant (RFC 9700 §2.4)\n"
        );
    }
    assert_eq!(t.snapshot(), before);
    let shown = t.json(["client", "show", "spa", "--json"]);
    assert_eq!(strings(&shown["grant_types"]), ["refresh_token"]);
}

/// A client_credentials token's `sub` is the client id and a user's is the user's UUID, so a
/// client id may not look like a UUID, in any of the forms a UUID parser takes.
async fn uuid_shaped_client_ids_are_refused(backend: Backend) {
    let t = Tessera::new(backend).await;
    let user_id = str_field(&t.add_user("alice", &[]), "id").to_owned();
    let before = t.snapshot();
    for id in [
        user_id.as_str(),
        &user_id.to_uppercase(),
        &user_id.replace('-', ""),
        &format!("urn:uuid:{user_id}"),
        "00000000-0000-0000-0000-000000000000",
    ] {
        let err = t.fail(["client", "add", id, "--grant", "client_credentials"], 1);
        assert_eq!(
            err,
            format!(
                "error: client id {id} looks like a UUID, which is how user ids look in a token's sub; choose another id\n"
            )
        );
    }
    assert_eq!(t.snapshot(), before);
    // Ids that merely hold one are fine.
    t.ok([
        "client",
        "add",
        &format!("svc-{user_id}"),
        "--grant",
        "client_credentials",
    ]);
}

async fn rotate_secret_gives_a_new_secret(backend: Backend) {
    let t = Tessera::new(backend).await;
    let added = t.json([
        "client",
        "add",
        "svc",
        "--grant",
        "client_credentials",
        "--json",
    ]);
    let first = secret_of(&added);
    let rotated = t.json(["client", "rotate-secret", "svc", "--json"]);
    assert_client_fields(&rotated);
    let second = secret_of(&rotated);
    assert_ne!(first, second);
    let again = secret_of(&t.json(["client", "rotate-secret", "svc", "--json"]));
    assert_ne!(again, second);
    assert_ne!(again, first);
    assert!(
        t.json(["client", "show", "svc", "--json"])
            .get("client_secret")
            .is_none()
    );
    let text = t.ok(["client", "rotate-secret", "svc"]);
    assert!(text.contains("client_secret: tsc_"), "{text}");

    let err = t.fail(["client", "rotate-secret", "nope"], 1);
    assert_eq!(err, "error: client nope does not exist\n");
}

async fn update_changes_only_what_is_given(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.ok([
        "client", "add", "app", "--name", "App", "--grant", "password", "--scope", "read",
    ]);
    let updated = t.json([
        "client",
        "update",
        "app",
        "--scope",
        "read",
        "--scope",
        "admin",
        "--introspect",
        "true",
        "--access-ttl",
        "1h",
        "--json",
    ]);
    assert_client_fields(&updated);
    assert!(updated.get("client_secret").is_none(), "{updated}");
    assert_eq!(strings(&updated["scopes"]), ["read", "admin"]);
    assert_eq!(strings(&updated["grant_types"]), ["password"]);
    assert_eq!(updated["name"], "App");
    assert_eq!(updated["introspect"], true);
    assert_eq!(updated["access_token_ttl"], 3600);
    assert_eq!(t.json(["client", "show", "app", "--json"]), updated);

    let updated = t.json(["client", "update", "app", "--name", "Renamed", "--json"]);
    assert_eq!(updated["name"], "Renamed");
    assert_eq!(strings(&updated["scopes"]), ["read", "admin"]);
    assert_eq!(updated["introspect"], true);

    let before = t.snapshot();
    let err = t.fail(["client", "update", "app", "--grant", "implicit"], 1);
    assert!(err.contains("unknown grant implicit"), "{err}");
    let err = t.fail(["client", "update", "app", "--access-ttl", "2d"], 1);
    assert!(err.contains("between 1s and 1d"), "{err}");
    let err = t.fail(["client", "update", "ghost", "--name", "x"], 1);
    assert_eq!(err, "error: client ghost does not exist\n");
    assert_eq!(t.snapshot(), before);
}

async fn delete_client(backend: Backend) {
    let t = Tessera::new(backend).await;
    t.ok(["client", "add", "a", "--grant", "password"]);
    t.ok(["client", "add", "b", "--grant", "password"]);
    let out = t.ok(["client", "delete", "a"]);
    assert!(out.contains("client a deleted"), "{out}");
    let ids: Vec<Value> = t.clients().iter().map(|c| c["client_id"].clone()).collect();
    assert_eq!(ids, ["b"]);
    let err = t.fail(["client", "show", "a"], 1);
    assert_eq!(err, "error: client a does not exist\n");
    let err = t.fail(["client", "delete", "a"], 1);
    assert_eq!(err, "error: client a does not exist\n");
}

async fn duplicate_client_is_refused(backend: Backend) {
    let t = Tessera::new(backend).await;
    let first = t.json(["client", "add", "dup", "--grant", "password", "--json"]);
    let before = t.snapshot();
    let err = t.fail(["client", "add", "dup", "--grant", "refresh_token"], 1);
    assert_eq!(err, "error: client dup already exists\n");
    assert_eq!(t.snapshot(), before);
    let shown = t.json(["client", "show", "dup", "--json"]);
    assert_eq!(shown["grant_types"], first["grant_types"]);
}

async fn redirect_uris_are_registered_exactly_and_checked(backend: Backend) {
    let t = Tessera::new(backend).await;
    let added = t.json([
        "client",
        "add",
        "web",
        "--grant",
        "refresh_token",
        "--redirect-uri",
        "https://app.example.com/callback",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--redirect-uri",
        "https://app.example.com/callback",
        "--post-logout-redirect-uri",
        "https://app.example.com/bye",
        "--json",
    ]);
    assert_client_fields(&added);
    assert_eq!(added["first_party"], false);
    // Any program on the device may listen on a loopback port: no skipping consent then.
    let err = t.fail(["client", "update", "web", "--first-party", "true"], 1);
    assert!(
        err.contains("cannot redirect to http://127.0.0.1/callback"),
        "{err}"
    );
    let added = t.json([
        "client",
        "update",
        "web",
        "--redirect-uri",
        "https://app.example.com/callback",
        "--redirect-uri",
        "http://127.0.0.1/callback",
        "--json",
    ]);
    assert_eq!(
        strings(&added["redirect_uris"]),
        [
            "https://app.example.com/callback",
            "http://127.0.0.1/callback"
        ]
    );
    assert_eq!(
        strings(&added["post_logout_redirect_uris"]),
        ["https://app.example.com/bye"]
    );
    assert_eq!(added["first_party"], false);
    let mut shown = added.clone();
    shown
        .as_object_mut()
        .expect("an object")
        .remove("client_secret");
    assert_eq!(t.json(["client", "show", "web", "--json"]), shown);
    let text = t.ok(["client", "show", "web"]);
    assert!(
        text.contains("redirect:     https://app.example.com/callback http://127.0.0.1/callback"),
        "{text}"
    );
    assert!(!text.contains("first party"), "{text}");
    let listed = t.clients();
    assert_eq!(listed[0]["redirect_uris"], added["redirect_uris"]);

    // A client registered without them has none, and is not first-party.
    let plain = t.json([
        "client",
        "add",
        "svc",
        "--grant",
        "client_credentials",
        "--json",
    ]);
    assert_eq!(strings(&plain["redirect_uris"]), Vec::<String>::new());
    assert_eq!(plain["first_party"], false);

    let before = t.snapshot();
    for (uri, why) in [
        ("http://app.example.com/cb", "use https"),
        ("http://localhost:8080/cb", "use https"),
        ("https://app.example.com/cb#top", "fragment"),
        (
            "https://user:pw@app.example.com/cb",
            "user name or password",
        ),
        ("/callback", "not an absolute URI"),
        ("javascript:alert(1)", "reversed domain name"),
        ("https://app.example.com/a b", "control character"),
        (
            "https:evil.example/cb",
            "register it as \"https://evil.example/cb\"",
        ),
        ("https://evil.example\\@good.example/cb", "backslash"),
        ("http://127.1/cb", "register it as \"http://127.0.0.1/cb\""),
        (
            "https://app.example.com/cb?state=x",
            "which the authorization response adds",
        ),
    ] {
        let err = t.fail(
            [
                "client",
                "add",
                "bad",
                "--grant",
                "refresh_token",
                "--redirect-uri",
                uri,
            ],
            1,
        );
        assert!(err.contains(why), "{uri}: {err}");
        assert_one_line_error(&err);
        let err = t.fail(
            ["client", "update", "web", "--post-logout-redirect-uri", uri],
            1,
        );
        assert!(err.contains(why), "{uri}: {err}");
    }
    assert_eq!(t.snapshot(), before, "nothing refused was stored");

    let updated = t.json([
        "client",
        "update",
        "web",
        "--redirect-uri",
        "com.example.app:/oauth2redirect",
        "--first-party",
        "false",
        "--json",
    ]);
    assert_eq!(
        strings(&updated["redirect_uris"]),
        ["com.example.app:/oauth2redirect"]
    );
    assert_eq!(
        strings(&updated["post_logout_redirect_uris"]),
        ["https://app.example.com/bye"],
        "what was not given stays"
    );
    assert_eq!(updated["first_party"], false);

    // Only a confidential client whose redirects prove who it is may skip consent.
    let first = t.json([
        "client",
        "update",
        "web",
        "--redirect-uri",
        "https://app.example.com/callback",
        "--first-party",
        "true",
        "--json",
    ]);
    assert_eq!(first["first_party"], true);
    let text = t.ok(["client", "show", "web"]);
    assert!(text.contains("first party:  true"), "{text}");
    let err = t.fail(
        [
            "client",
            "add",
            "spa",
            "--public",
            "--grant",
            "refresh_token",
            "--first-party",
        ],
        1,
    );
    assert!(
        err.contains("a public client cannot be first-party"),
        "{err}"
    );
    let cleared = t.json([
        "client",
        "update",
        "web",
        "--no-redirect-uris",
        "--no-post-logout-redirect-uris",
        "--json",
    ]);
    assert_eq!(strings(&cleared["redirect_uris"]), Vec::<String>::new());
    assert_eq!(
        strings(&cleared["post_logout_redirect_uris"]),
        Vec::<String>::new()
    );
    let err = t.fail(
        [
            "client",
            "update",
            "web",
            "--no-redirect-uris",
            "--redirect-uri",
            "https://app.example.com/cb",
        ],
        2,
    );
    assert!(err.contains("cannot be used with"), "{err}");
    let err = t.fail(["client", "update", "web", "--name", "a\u{1b}]8;;"], 1);
    assert!(err.contains("without control characters"), "{err}");
    let audit = t.audit();
    assert!(
        audit.iter().any(|row| row["action"] == "client.update"
            && row["details"]["redirect_uris"][0] == "com.example.app:/oauth2redirect"),
        "{audit:?}"
    );
}

crate::both_backends!(
    redirect_uris_are_registered_exactly_and_checked,
    add_confidential_client_json,
    add_text_output_shows_secret_once,
    public_client_has_no_secret,
    uuid_shaped_client_ids_are_refused,
    rotate_secret_gives_a_new_secret,
    update_changes_only_what_is_given,
    delete_client,
    duplicate_client_is_refused,
);
