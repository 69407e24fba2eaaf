//! Listings come one page at a time: `--limit`, `--after` with the cursor the previous page
//! printed, `user list --search PREFIX`; a full page says on stderr how to get the next.

use std::process::Output;

use serde_json::Value;

use crate::common::Backend;
use crate::{Tessera, array, str_field};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a listing that must succeed with JSON on stdout; returns the rows and the cursor its
/// hint named (None when it printed no hint).
#[track_caller]
fn page(t: &Tessera, args: &[&str]) -> (Vec<Value>, Option<String>) {
    let out = t.run(args, None);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    let rows = array(serde_json::from_slice(&out.stdout).expect("JSON on stdout"));
    let err = stderr(&out);
    let cursor = err
        .lines()
        .find_map(|l| l.split_once("--after ").map(|(_, c)| c.trim().to_owned()));
    (rows, cursor)
}

fn names(rows: &[Value], field: &str) -> Vec<String> {
    rows.iter()
        .map(|r| str_field(r, field).to_owned())
        .collect()
}

async fn user_list_pages_and_searches(backend: Backend) {
    let t = Tessera::new(backend).await;
    // Letters only where the order is asserted: it is the database's collation.
    for name in [
        "dave", "bob", "BOBBY", "carol", "ann", "eve", "b_1", "b%2", "b\\x",
    ] {
        t.add_user(name, &[]);
    }
    let all = names(&page(&t, &["user", "list", "--json"]).0, "username");
    assert_eq!(
        all.len(),
        9,
        "the default page (100) holds them all: {all:?}"
    );
    let letters: Vec<&String> = all
        .iter()
        .filter(|n| n.chars().all(char::is_alphabetic))
        .collect();
    assert_eq!(letters, ["ann", "bob", "BOBBY", "carol", "dave", "eve"]);

    // Pages of 4 follow each other through every user exactly once, in the listing's order.
    let (mut seen, mut cursor) = page(&t, &["user", "list", "--json", "--limit", "4"]);
    assert_eq!(seen.len(), 4);
    let mut pages = 1;
    while let Some(after) = cursor {
        let (rows, next) = page(
            &t,
            &["user", "list", "--json", "--limit", "4", "--after", &after],
        );
        seen.extend(rows);
        cursor = next;
        pages += 1;
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(pages, 3, "4 + 4 + 1");
    assert_eq!(names(&seen, "username"), all);

    // The prefix is literal: LIKE's metacharacters and its escape character match themselves.
    let search = |p: &str| {
        let mut found = names(
            &page(&t, &["user", "list", "--json", "--search", p]).0,
            "username",
        );
        found.sort();
        found
    };
    assert_eq!(search("bo"), ["BOBBY", "bob"]);
    assert_eq!(
        search("BO"),
        ["BOBBY", "bob"],
        "case-insensitive, as usernames are"
    );
    assert_eq!(search("b_"), ["b_1"]);
    assert_eq!(search("b%"), ["b%2"]);
    assert_eq!(search("b\\"), ["b\\x"]);
    assert_eq!(search("b"), ["BOBBY", "b%2", "b\\x", "b_1", "bob"]);
    assert_eq!(search("'; DROP TABLE users; --"), Vec::<String>::new());
    assert_eq!(search("z"), Vec::<String>::new());
    assert_eq!(search("\u{1F600}\u{200D}"), Vec::<String>::new());

    // Search and paging together.
    let (one, cursor) = page(
        &t,
        &["user", "list", "--json", "--search", "bo", "--limit", "1"],
    );
    assert_eq!(names(&one, "username"), ["bob"]);
    let (two, hint) = page(
        &t,
        &[
            "user",
            "list",
            "--json",
            "--search",
            "bo",
            "--limit",
            "1",
            "--after",
            &cursor.expect("next"),
        ],
    );
    assert_eq!(names(&two, "username"), ["BOBBY"]);
    assert!(
        hint.is_some(),
        "a full page hints even when it happens to be the last"
    );

    let (capped, _) = page(&t, &["user", "list", "--json", "--limit", "4294967295"]);
    assert_eq!(capped.len(), 9);
    let table = t.ok(["user", "list", "--limit", "2"]);
    assert_eq!(table.lines().count(), 3, "header and two rows: {table}");
}

async fn client_list_pages(backend: Backend) {
    let t = Tessera::new(backend).await;
    for id in ["c3", "c1", "c2"] {
        t.ok(["client", "add", id, "--grant", "client_credentials"]);
    }
    let (first, cursor) = page(&t, &["client", "list", "--json", "--limit", "2"]);
    assert_eq!(names(&first, "client_id"), ["c1", "c2"]);
    let (rest, hint) = page(
        &t,
        &[
            "client",
            "list",
            "--json",
            "--limit",
            "2",
            "--after",
            &cursor.expect("next"),
        ],
    );
    assert_eq!(names(&rest, "client_id"), ["c3"]);
    assert_eq!(hint, None);
}

async fn audit_pages_with_a_cursor(backend: Backend) {
    let t = Tessera::new(backend).await;
    for role in ["r1", "r2", "r3", "r4", "r5"] {
        t.add_role(role);
    }
    let base = ["audit", "--json", "--action", "role.add", "--limit", "2"];
    let after = |cursor: Option<String>| {
        let cursor = cursor.expect("a full page names the next");
        page(&t, &[&base[..], &["--after", &cursor]].concat())
    };
    let (newest, cursor) = page(&t, &base);
    assert_eq!(newest.len(), 2);
    let (older, cursor) = after(cursor);
    let (oldest, hint) = after(cursor);
    assert_eq!(hint, None);
    let targets: Vec<String> = [newest, older, oldest]
        .concat()
        .iter()
        .map(|r| str_field(r, "target").to_owned())
        .collect();
    assert_eq!(
        targets,
        ["r5", "r4", "r3", "r2", "r1"],
        "every row once, newest first"
    );
    let err = t.fail(["audit", "--after", "yesterday"], 2);
    assert!(err.contains("--after"), "{err}");
}

crate::both_backends!(
    user_list_pages_and_searches,
    client_list_pages,
    audit_pages_with_a_cursor,
);
