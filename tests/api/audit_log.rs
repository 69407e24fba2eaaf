//! The audit log at load and over time: every answered request is audited before its answer,
//! a request whose events cannot be written fails unless the operator opted into dropping,
//! rotated tokens and revoked families are kept only as long as reuse detection needs them,
//! and on Postgres retention drops whole day partitions.

use std::time::Duration;

use sqlx::Connection;
use tessera::clock::Clock;
use tessera::store::AuditFilter;

use crate::common::Backend;
use crate::helpers::{Client, TestApp, execute, spawn_app, spawn_app_with};

const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

async fn scalar(app: &TestApp, sql: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url)
        .await
        .expect("connect");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
    n
}

async fn issued_rows(app: &TestApp, client: &Client) -> usize {
    app.admin
        .store
        .audit_query(&AuditFilter {
            client_id: Some(client.id.clone()),
            action: Some("token.issued".into()),
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("audit")
        .len()
}

async fn client_credentials(app: &TestApp, client: &Client) -> u16 {
    app.token(Some(client), &[("grant_type", "client_credentials")])
        .await
        .status()
        .as_u16()
}

async fn every_answered_request_is_audited_before_its_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app
        .add_client("service", &["client_credentials"], &["read"])
        .await;
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (http, url, client) = (app.http.clone(), app.url("/oauth/token"), client.clone());
            tokio::spawn(async move {
                let mut ok = 0;
                for _ in 0..25 {
                    let response = http
                        .post(&url)
                        .basic_auth(&client.id, Some(&client.secret))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .await
                        .expect("send");
                    assert_eq!(response.status(), 200);
                    ok += 1;
                }
                ok
            })
        })
        .collect();
    let mut answered = 0;
    for task in tasks {
        answered += task.await.expect("task");
    }
    assert_eq!(answered, 400);
    // Read at once, without waiting: a 200 means its row has committed.
    assert_eq!(issued_rows(&app, &client).await, answered);

    // While the audit table cannot be written, the answer waits; it comes once it can.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url)
        .await
        .expect("connect");
    let mut tx = conn.begin().await.expect("begin");
    let hold = match backend {
        Backend::Postgres => "LOCK TABLE audit_log IN SHARE MODE",
        // The write lock: SQLite has one writer at a time.
        Backend::Sqlite => {
            "INSERT INTO roles (name, description, created_at) VALUES ('lock', '', 0)"
        }
    };
    sqlx::query(hold).execute(&mut *tx).await.expect("hold");
    let pending = tokio::spawn({
        let (http, url, client) = (app.http.clone(), app.url("/oauth/token"), client.clone());
        async move {
            http.post(&url)
                .basic_auth(&client.id, Some(&client.secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("send")
                .status()
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !pending.is_finished(),
        "answered before its audit row could be written"
    );
    tx.rollback().await.expect("release");
    assert_eq!(pending.await.expect("task"), 200);
    assert_eq!(issued_rows(&app, &client).await, answered + 1);
}

async fn a_request_whose_audit_cannot_be_written_fails(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app
        .add_client("service", &["client_credentials"], &["read"])
        .await;
    assert_eq!(client_credentials(&app, &client).await, 200);
    execute(&app, "ALTER TABLE audit_log RENAME TO audit_log_away").await;
    let status = client_credentials(&app, &client).await;
    assert!(
        status == 500 || status == 503,
        "a token nobody could audit is not handed out: {status}"
    );
    execute(&app, "ALTER TABLE audit_log_away RENAME TO audit_log").await;
    assert_eq!(client_credentials(&app, &client).await, 200);
    assert_eq!(
        issued_rows(&app, &client).await,
        2,
        "exactly the answered two"
    );
}

async fn dropping_is_an_opt_in_that_answers_first(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.audit.on_overload = tessera::store::OnOverload::Drop;
    })
    .await;
    let client = app
        .add_client("service", &["client_credentials"], &["read"])
        .await;
    execute(&app, "ALTER TABLE audit_log RENAME TO audit_log_away").await;
    assert_eq!(
        client_credentials(&app, &client).await,
        200,
        "answered without its audit row"
    );
    execute(&app, "ALTER TABLE audit_log_away RENAME TO audit_log").await;
    // The queued event is retried and lands once the table is back (the process lived).
    let mut rows = 0;
    for _ in 0..100 {
        rows = issued_rows(&app, &client).await;
        if rows == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rows, 1);
}

async fn rotated_tokens_and_revoked_families_are_kept_for_reuse_detection_only(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.tokens.refresh_reuse_detection = Duration::from_secs(HOUR as u64);
        s.maintenance.gc_interval = Duration::ZERO;
    })
    .await;
    let client = app.seed().await;
    let login = app.login(&client).await;
    let r0 = login["refresh_token"].as_str().expect("r0").to_owned();
    let r1 = refreshed(&app, &client, &r0).await;
    let other = app.login(&client).await["refresh_token"]
        .as_str()
        .expect("other")
        .to_owned();
    let revoked = app
        .post_form("/oauth/revoke", Some(&client), &[("token", &other)])
        .await;
    assert_eq!(revoked.status(), 200);
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM refresh_tokens").await, 3);

    // Within the window nothing goes.
    app.clock.advance(HOUR - 60);
    let report = app.admin.gc().await.expect("gc");
    assert_eq!(
        (report.rows.refresh_tokens, report.rows.refresh_families),
        (0, 0)
    );

    // After it, the rotated r0 and the revoked family go; the live r1 and its family stay.
    app.clock.advance(120);
    let report = app.admin.gc().await.expect("gc");
    assert_eq!(report.rows.refresh_tokens, 1, "r0");
    assert_eq!(
        report.rows.refresh_families, 1,
        "the revoked family, with its token"
    );
    assert_eq!(scalar(&app, "SELECT COUNT(*) FROM refresh_tokens").await, 1);
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM refresh_families").await,
        1
    );

    // r0 is now merely unknown: refused, and its family lives on.
    let response = app.refresh(&client, &r0).await;
    assert_eq!(response.status(), 400);
    refreshed(&app, &client, &r1).await;
}

/// A rotated token is remembered for the whole window even when its own idle expiry would
/// have come sooner: a thief who rotated it late in its idle life is still caught.
async fn reuse_detection_outlasts_the_rotated_tokens_idle_expiry(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.tokens.refresh_idle_ttl = Duration::from_secs(2 * HOUR as u64);
        s.tokens.refresh_reuse_detection = Duration::from_secs(DAY as u64);
        s.maintenance.gc_interval = Duration::ZERO;
    })
    .await;
    let client = app.seed().await;
    let r0 = app.login(&client).await["refresh_token"]
        .as_str()
        .expect("r0")
        .to_owned();
    app.clock.advance(HOUR + 1800);
    let r1 = refreshed(&app, &client, &r0).await;
    // r0's own idle expiry (2 h after login) has passed; its window (1 d after rotation) has not.
    app.clock.advance(HOUR);
    let report = app.admin.gc().await.expect("gc");
    assert_eq!(report.rows.refresh_tokens, 0, "r0 is kept: {report:?}");
    assert_eq!(app.refresh(&client, &r0).await.status(), 400);
    assert_eq!(
        app.refresh(&client, &r1).await.status(),
        400,
        "presenting r0 again revoked the family"
    );
}

async fn refreshed(app: &TestApp, client: &Client, token: &str) -> String {
    let response = app.refresh(client, token).await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.expect("json");
    body["refresh_token"].as_str().expect("rotated").to_owned()
}

/// Postgres only: the audit log's day partitions.
async fn partitions(app: &TestApp) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&app.db.url)
        .await
        .expect("connect");
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
         WHERE i.inhparent = 'audit_log'::regclass ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .expect("partitions");
    let _ = conn.close().await;
    names
}

fn day_name(at: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(at.div_euclid(DAY) * DAY).expect("date");
    format!(
        "audit_log_p{:04}{:02}{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

async fn postgres_retention_drops_whole_days() {
    let app = spawn_app_with(Backend::Postgres, |s| {
        s.audit.retention = Duration::from_secs(2 * DAY as u64);
        s.maintenance.gc_interval = Duration::ZERO;
    })
    .await;
    let client = app
        .add_client("service", &["client_credentials"], &["read"])
        .await;
    let t0 = app.clock.now();
    // The migration made today's and the next two; the server attaches the third at start.
    let wanted: Vec<String> = (0..=3).map(|ahead| day_name(t0 + ahead * DAY)).collect();
    let mut present = Vec::new();
    for _ in 0..100 {
        present = partitions(&app).await;
        if wanted.iter().all(|name| present.contains(name)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for name in &wanted {
        assert!(present.contains(name), "{name} in {present:?}");
    }
    assert!(present.contains(&"audit_log_default".to_owned()));

    // Day 0 and day 1 each get an event; their rows sit in their own day's partition.
    assert_eq!(client_credentials(&app, &client).await, 200);
    app.clock.advance(DAY);
    assert_eq!(client_credentials(&app, &client).await, 200);
    let in_day0 = scalar(&app, &format!("SELECT COUNT(*) FROM {}", day_name(t0))).await;
    assert!(in_day0 >= 1, "{in_day0}");
    assert_eq!(
        scalar(&app, "SELECT COUNT(*) FROM audit_log_default").await,
        0,
        "nothing fell through to the default partition"
    );

    // Three days on, day 0 ended more than the retention ago: its partition is dropped whole.
    // Day 1 ended less than that ago (though some of its rows are older), so it stays.
    app.clock.advance(2 * DAY);
    let report = app.admin.gc().await.expect("gc");
    assert!(report.rows.audit_partitions >= 1, "{report:?}");
    let left = partitions(&app).await;
    assert!(!left.contains(&day_name(t0)), "{left:?}");
    assert!(left.contains(&day_name(t0 + DAY)), "{left:?}");
    assert!(
        left.contains(&day_name(app.clock.now() + 3 * DAY)),
        "clean-up attached the days ahead: {left:?}"
    );
    assert_eq!(issued_rows(&app, &client).await, 1, "day 1's row stays");

    // Writing goes on into the new days.
    assert_eq!(client_credentials(&app, &client).await, 200);
    assert_eq!(issued_rows(&app, &client).await, 2);
    let again = app.admin.gc().await.expect("gc");
    assert_eq!(again.rows.audit_partitions, 0);
}

crate::both_backends!(
    every_answered_request_is_audited_before_its_answer,
    a_request_whose_audit_cannot_be_written_fails,
    dropping_is_an_opt_in_that_answers_first,
    rotated_tokens_and_revoked_families_are_kept_for_reuse_detection_only,
    reuse_detection_outlasts_the_rotated_tokens_idle_expiry,
);

mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_retention_drops_whole_days() {
        super::postgres_retention_drops_whole_days().await
    }
}
