//! Bad input: each gets a clear one-line error, a non-zero exit, and leaves the database as it
//! was (or, for SQL metacharacters, is taken as plain data and round-trips).

use std::ffi::OsString;

use crate::common::Backend;
use crate::{PASSWORD, Tessera, str_field, strings};

fn pw() -> String {
    format!("{PASSWORD}\n")
}

/// A database holding one user with one role, one role unassigned, and one client.
async fn seeded(backend: Backend) -> Tessera {
    let t = Tessera::new(backend).await;
    t.add_role("staff");
    t.add_role("spare");
    t.add_user("alice", &["staff"]);
    t.ok(["client", "add", "app", "--grant", "password"]);
    t
}

async fn unknown_role_on_add_creates_nothing(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    let err = t.fail_stdin(
        ["user", "add", "bob", "--role", "x", "--password-stdin"],
        &pw(),
        1,
    );
    assert_eq!(
        err,
        "error: role x does not exist; create it with `tessera role add x`\n"
    );
    // One good role and one missing: still nothing, and the message names the missing one.
    let err = t.fail_stdin(
        [
            "user",
            "add",
            "bob",
            "--role",
            "staff",
            "--role",
            "x",
            "--password-stdin",
        ],
        &pw(),
        1,
    );
    assert_eq!(
        err,
        "error: role x does not exist; create it with `tessera role add x`\n"
    );
    assert_eq!(t.snapshot(), before);
    t.fail(["user", "show", "bob"], 1);
}

async fn duplicate_username_differing_only_by_case(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    for dup in ["alice", "ALICE", "Alice", "aLiCe"] {
        let err = t.fail_stdin(["user", "add", dup, "--password-stdin"], &pw(), 1);
        assert_eq!(err, format!("error: user {dup} already exists\n"));
    }
    assert_eq!(t.snapshot(), before);

    // Case folding is Unicode-aware, not ASCII only.
    t.add_user("Émile", &[]);
    let before = t.snapshot();
    let err = t.fail_stdin(["user", "add", "éMILE", "--password-stdin"], &pw(), 1);
    assert_eq!(err, "error: user éMILE already exists\n");
    assert_eq!(t.snapshot(), before);
    assert_eq!(str_field(&t.user("ÉMILE"), "username"), "Émile");
}

async fn empty_and_whitespace_usernames(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    for name in ["", " ", "   ", "\u{a0}", "\u{3000}"] {
        let err = t.fail_stdin(["user", "add", name, "--password-stdin"], &pw(), 1);
        assert_eq!(
            err, "error: username must not be empty or whitespace\n",
            "{name:?}"
        );
    }
    for name in [" alice", "alice ", " bob", "bob\u{a0}"] {
        let err = t.fail_stdin(["user", "add", name, "--password-stdin"], &pw(), 1);
        assert_eq!(
            err, "error: username must not start or end with whitespace\n",
            "{name:?}"
        );
    }
    // Lookups refuse them the same way rather than matching something.
    let err = t.fail(["user", "show", ""], 1);
    assert_eq!(err, "error: username must not be empty or whitespace\n");
    let err = t.fail(["user", "disable", " alice"], 1);
    assert_eq!(
        err,
        "error: username must not start or end with whitespace\n"
    );
    assert_eq!(t.snapshot(), before);
}

async fn very_long_usernames(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    for name in ["x".repeat(10_000), "x".repeat(256), "é".repeat(256)] {
        let err = t.fail_stdin(["user", "add", &name, "--password-stdin"], &pw(), 1);
        assert_eq!(err, "error: username is longer than 255 characters\n");
        assert!(err.len() < 200, "the message does not echo the name");
        let err = t.fail(["user", "show", &name], 1);
        assert_eq!(err, "error: username is longer than 255 characters\n");
    }
    assert_eq!(t.snapshot(), before);

    // 255 characters is the limit, counted in characters, not bytes.
    let longest = "é".repeat(255);
    let user = t.add_user(&longest, &[]);
    assert_eq!(str_field(&user, "username"), longest);
    assert_eq!(t.usernames(), ["alice", longest.as_str()]);
}

async fn control_characters_in_usernames(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    for name in [
        "a\u{1}b",
        "tab\there",
        "new\nline",
        "carriage\rreturn",
        "esc\u{1b}[31mred",
        "del\u{7f}",
        "nel\u{85}x",
        "bell\u{7}",
    ] {
        let err = t.fail_stdin(["user", "add", name, "--password-stdin"], &pw(), 1);
        assert_eq!(
            err, "error: username must not contain control characters\n",
            "{name:?}"
        );
    }
    assert_eq!(t.snapshot(), before);
}

async fn non_utf8_username_is_a_usage_error(backend: Backend) {
    use std::os::unix::ffi::OsStringExt;
    let t = seeded(backend).await;
    let before = t.snapshot();
    let name = OsString::from_vec(vec![b'a', 0xff, b'b']);
    let args: Vec<OsString> = vec!["user".into(), "add".into(), name, "--password-stdin".into()];
    let err = t.fail_stdin(&args, &pw(), 2);
    assert!(err.contains("UTF-8"), "{err}");
    assert_eq!(t.snapshot(), before);
}

async fn sql_metacharacters_are_data(backend: Backend) {
    let t = seeded(backend).await;
    let names = [
        "O'Brien",
        "robert'); DROP TABLE users;--",
        "x' OR '1'='1",
        "\"quoted\"",
        "back\\slash",
        "per%cent",
        "under_score",
        "semi;colon",
        "$1",
        "a/*comment*/b",
    ];
    for name in names {
        let user = t.add_user(name, &["staff"]);
        assert_eq!(str_field(&user, "username"), name);
        assert_eq!(strings(&user["roles"]), ["staff"]);
    }
    // Every user is still there, alice included, each found by its exact name only.
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    expected.push("alice".into());
    let mut got = t.usernames();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    let staff = t.roles();
    let staff = staff.iter().find(|r| r["name"] == "staff").expect("staff");
    assert_eq!(staff["members"], names.len() + 1);

    // LIKE wildcards do not match other names.
    for pattern in ["per_cent", "%", "under%", "_lice", "x' OR '1'='1' --"] {
        let err = t.fail(["user", "show", pattern], 1);
        assert_eq!(err, format!("error: user {pattern} does not exist\n"));
    }

    // Changes through them hit exactly one row.
    t.ok(["user", "disable", "x' OR '1'='1"]);
    let disabled: Vec<String> = t
        .users()
        .iter()
        .filter(|u| u["disabled"] == true)
        .map(|u| str_field(u, "username").to_owned())
        .collect();
    assert_eq!(disabled, ["x' OR '1'='1"]);
    t.ok(["user", "delete", "robert'); DROP TABLE users;--"]);
    assert_eq!(t.users().len(), names.len());
    let audited = t.json(["audit", "--user", "O'Brien", "--json"]);
    assert_eq!(audited[0]["action"], "user.add");

    // Free text elsewhere round-trips too.
    t.ok([
        "role",
        "add",
        "quoted",
        "--description",
        "it's \"x\"; DROP TABLE roles;--",
    ]);
    let roles = t.roles();
    let quoted = roles
        .iter()
        .find(|r| r["name"] == "quoted")
        .expect("quoted");
    assert_eq!(quoted["description"], "it's \"x\"; DROP TABLE roles;--");
    t.ok([
        "client",
        "add",
        "sqlapp",
        "--name",
        "Bobby'); DELETE FROM clients;--",
        "--grant",
        "password",
    ]);
    let client = t.json(["client", "show", "sqlapp", "--json"]);
    assert_eq!(client["name"], "Bobby'); DELETE FROM clients;--");
    assert_eq!(t.clients().len(), 2);

    // Role and client ids with metacharacters are refused outright.
    let before = t.snapshot();
    let err = t.fail(["role", "add", "x'; DROP TABLE roles;--"], 1);
    assert!(err.contains("role names are"), "{err}");
    let err = t.fail(["client", "add", "x'--", "--grant", "password"], 1);
    assert!(err.contains("client ids are"), "{err}");
    assert_eq!(t.snapshot(), before);
}

async fn password_below_policy(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    for short in ["", "\n", "1234567\n", "short\r\n", "ééééééé\n"] {
        let err = t.fail_stdin(["user", "add", "bob", "--password-stdin"], short, 1);
        assert_eq!(
            err, "error: password is too short: at least 8 characters\n",
            "{short:?}"
        );
    }
    let long = format!("{}\n", "p".repeat(129));
    let err = t.fail_stdin(["user", "add", "bob", "--password-stdin"], &long, 1);
    assert_eq!(err, "error: password is too long: at most 128 characters\n");
    // set-password is held to the same policy and changes nothing.
    let err = t.fail_stdin(
        ["user", "set-password", "alice", "--password-stdin"],
        "1234567\n",
        1,
    );
    assert_eq!(err, "error: password is too short: at least 8 characters\n");
    assert_eq!(t.snapshot(), before);
    // Exactly eight characters (not bytes) is enough.
    t.ok_stdin(["user", "add", "bob", "--password-stdin"], "éééééééé\n");
}

async fn password_equal_to_username(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    for (name, password) in [
        ("longusername", "longusername\n"),
        ("LongUserName", "longusername\n"),
        ("longusername", "LONGUSERNAME\n"),
    ] {
        let err = t.fail_stdin(["user", "add", name, "--password-stdin"], password, 1);
        assert_eq!(err, "error: password must not equal the username\n");
    }
    t.add_user("alicealice", &[]);
    let before_set = t.snapshot();
    let err = t.fail_stdin(
        ["user", "set-password", "alicealice", "--password-stdin"],
        "AliceAlice\n",
        1,
    );
    assert_eq!(err, "error: password must not equal the username\n");
    assert_eq!(t.snapshot(), before_set);
    t.ok(["user", "delete", "alicealice"]);
    let mut after = t.snapshot();
    // Only the add and delete of alicealice were audited in between.
    let audit = after["audit"].as_array_mut().expect("audit");
    audit.drain(..2);
    assert_eq!(after, before);
}

async fn unknown_grant_in_client_add(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    for grant in [
        "implicit",
        "Authorization_Code",
        "PASSWORD",
        "",
        "password ",
    ] {
        let err = t.fail(["client", "add", "new", "--grant", grant], 1);
        assert_eq!(
            err,
            format!(
                "error: unknown grant {grant}; use authorization_code, password, refresh_token or client_credentials\n"
            )
        );
    }
    let err = t.fail(
        [
            "client", "add", "new", "--grant", "password", "--grant", "bogus",
        ],
        1,
    );
    assert!(err.contains("unknown grant bogus"), "{err}");
    // No grant at all is a usage error.
    t.fail(["client", "add", "new"], 2);
    // Other bad client input.
    let err = t.fail(
        [
            "client", "add", "new", "--grant", "password", "--scope", "a b",
        ],
        1,
    );
    assert!(err.contains("invalid scope"), "{err}");
    let err = t.fail(
        [
            "client",
            "add",
            "new",
            "--grant",
            "password",
            "--access-ttl",
            "0s",
        ],
        1,
    );
    assert!(err.contains("between 1s and 1d"), "{err}");
    t.fail(
        [
            "client",
            "add",
            "new",
            "--grant",
            "password",
            "--access-ttl",
            "soon",
        ],
        2,
    );
    let long_name = "n".repeat(201);
    let err = t.fail(
        [
            "client", "add", "new", "--grant", "password", "--name", &long_name,
        ],
        1,
    );
    assert!(err.contains("at most 200 characters"), "{err}");
    let long_id = "c".repeat(129);
    let err = t.fail(["client", "add", &long_id, "--grant", "password"], 1);
    assert!(err.contains("client ids are"), "{err}");
    assert_eq!(t.snapshot(), before);
}

async fn password_prompt_without_terminal_is_usage_error(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    // stdin is a pipe here, not a terminal.
    let err = t.fail_stdin(["user", "add", "bob"], &pw(), 2);
    assert_eq!(
        err,
        "error: stdin is not a terminal: pass --password-stdin to read the password from stdin\n"
    );
    let err = t.fail_stdin(["user", "add", "bob", "--role", "staff"], "", 2);
    assert!(err.contains("--password-stdin"), "{err}");
    let err = t.fail_stdin(["user", "set-password", "alice"], &pw(), 2);
    assert!(err.contains("--password-stdin"), "{err}");
    assert_eq!(t.snapshot(), before);
    t.fail(["user", "show", "bob"], 1);
}

async fn password_is_one_line_of_stdin(backend: Backend) {
    let t = seeded(backend).await;
    // Only the first line counts; a trailing CR is dropped; missing newline is fine.
    t.ok_stdin(
        ["user", "add", "bob", "--password-stdin"],
        "first line pw\r\nsecond line\n",
    );
    t.ok_stdin(
        ["user", "add", "carol", "--password-stdin"],
        "no newline pw",
    );
    assert_eq!(t.usernames(), ["alice", "bob", "carol"]);
}

async fn usage_errors_exit_2(backend: Backend) {
    let t = seeded(backend).await;
    let before = t.snapshot();
    for args in [
        vec!["user"],
        vec!["user", "add"],
        vec!["user", "frobnicate"],
        vec!["user", "add", "bob", "--rol", "staff"],
        vec!["role", "delete"],
        vec!["client", "update", "app", "--introspect", "maybe"],
        vec!["--no-such-flag"],
    ] {
        t.fail_stdin(&args, &pw(), 2);
    }
    // A leading dash is an option, not a username; `--` makes it a name.
    t.fail_stdin(["user", "add", "-bob", "--password-stdin"], &pw(), 2);
    assert_eq!(t.snapshot(), before);
    t.ok_stdin(["user", "add", "--password-stdin", "--", "-bob"], &pw());
    let bob = t.json(["user", "show", "--json", "--", "-bob"]);
    assert_eq!(str_field(&bob, "username"), "-bob");
}

crate::both_backends!(
    unknown_role_on_add_creates_nothing,
    duplicate_username_differing_only_by_case,
    empty_and_whitespace_usernames,
    very_long_usernames,
    control_characters_in_usernames,
    non_utf8_username_is_a_usage_error,
    sql_metacharacters_are_data,
    password_below_policy,
    password_equal_to_username,
    unknown_grant_in_client_add,
    password_prompt_without_terminal_is_usage_error,
    password_is_one_line_of_stdin,
    usage_errors_exit_2,
);
