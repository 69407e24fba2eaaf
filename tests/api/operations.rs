//! Operations over HTTP: Prometheus metrics that parse and move, throttling, request ids.

use std::collections::HashMap;

use crate::both_backends;
use tessera::config::MetricsBind;
use tessera::store::{AuditFilter, AuditRow};

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app};

/// Parses the Prometheus text format into `name{labels}` → value, checking every line is
/// either a comment or `series value`.
fn parse_exposition(text: &str) -> HashMap<String, f64> {
    let mut series = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let kind = comment.split_whitespace().next().unwrap_or("");
            assert!(
                kind == "HELP" || kind == "TYPE",
                "unexpected comment {line:?}"
            );
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("malformed line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let bare = name.split('{').next().unwrap_or("");
        assert!(
            !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line:?}"
        );
        series.insert(name.to_owned(), value);
    }
    series
}

fn value(series: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    series
        .iter()
        .filter(|(k, _)| {
            k.split('{').next() == Some(name)
                && labels
                    .iter()
                    .all(|(l, v)| k.contains(&format!("{l}=\"{v}\"")))
        })
        .map(|(_, v)| *v)
        .sum()
}

async fn metrics_parse_and_move(backend: Backend) {
    let app = spawn_app(backend).await;
    // A client id of its own: the recorder is shared by every app in this test process.
    app.admin.add_role("admin", "").await.expect("role");
    app.admin
        .add_user("alice", PASSWORD, &["admin".into()], false)
        .await
        .expect("user");
    let client_id = format!("metrics-{}", uuid::Uuid::new_v4().simple());
    let client = app
        .add_client(&client_id, &["password", "refresh_token"], &["read"])
        .await;

    let scrape = || async {
        let response = app
            .http
            .get(app.metrics_url())
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/plain"),
            "Prometheus text format"
        );
        parse_exposition(&response.text().await.expect("text"))
    };
    let before = scrape().await;
    let login = app.password_grant(&client, "alice", PASSWORD).await;
    assert_eq!(login.status(), 200);
    let body: serde_json::Value = login.json().await.expect("json");
    assert_eq!(
        app.password_grant(&client, "alice", "wrong password!")
            .await
            .status(),
        400
    );
    let refresh = body["refresh_token"].as_str().expect("refresh");
    assert_eq!(app.refresh(&client, refresh).await.status(), 200);
    assert_eq!(app.refresh(&client, refresh).await.status(), 400, "reuse");
    let after = scrape().await;

    let issued = |s: &HashMap<String, f64>, grant: &str| {
        value(
            s,
            "tessera_tokens_issued_total",
            &[("grant", grant), ("client", &client_id)],
        )
    };
    assert_eq!(
        issued(&after, "password") - issued(&before, "password"),
        1.0
    );
    assert_eq!(
        issued(&after, "refresh_token") - issued(&before, "refresh_token"),
        1.0
    );
    let failures = |s: &HashMap<String, f64>| {
        value(
            s,
            "tessera_login_failures_total",
            &[("reason", "wrong_password")],
        )
    };
    assert!(failures(&after) - failures(&before) >= 1.0);
    let reuse = |s: &HashMap<String, f64>| value(s, "tessera_refresh_reuse_detected_total", &[]);
    assert!(reuse(&after) - reuse(&before) >= 1.0);
    let requests = |s: &HashMap<String, f64>, status: &str| {
        value(
            s,
            "tessera_http_requests_total",
            &[
                ("route", "/oauth/token"),
                ("method", "POST"),
                ("status", status),
            ],
        )
    };
    assert!(requests(&after, "200") - requests(&before, "200") >= 2.0);
    assert!(requests(&after, "400") - requests(&before, "400") >= 2.0);
    let histogram_count = value(
        &after,
        "tessera_http_request_duration_seconds_count",
        &[("route", "/oauth/token")],
    );
    assert!(histogram_count >= 4.0, "latency histogram counts requests");
    assert!(value(&after, "tessera_password_hash_duration_seconds_count", &[]) >= 2.0);
    assert_eq!(
        value(
            &after,
            "tessera_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(
        after
            .keys()
            .any(|k| k.starts_with("tessera_db_pool_connections{"))
    );
}

/// `login.failure` rows whose details name `reason`.
fn reasons(rows: &[AuditRow], reason: &str) -> usize {
    rows.iter()
        .filter(|r| r.details.contains(&format!("\"{reason}\"")))
        .count()
}

/// The `login.failure` audit rows once `enough` holds (they are written in batches), or after
/// 2 s.
async fn login_failures(app: &TestApp, enough: impl Fn(&[AuditRow]) -> bool) -> Vec<AuditRow> {
    let mut rows = Vec::new();
    for _ in 0..100 {
        rows = app
            .admin
            .store
            .audit_query(&AuditFilter {
                action: Some("login.failure".into()),
                limit: 1000,
                ..Default::default()
            })
            .await
            .expect("audit");
        if enough(&rows) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    rows
}

async fn throttling_refuses_after_repeated_failures(backend: Backend) {
    let app = spawn_app(backend).await;
    let client = app.seed().await;
    let max = app.settings.security.max_failures;
    for _ in 0..max {
        assert_eq!(
            app.password_grant(&client, "alice", "not it at all")
                .await
                .status(),
            400
        );
    }
    // Locked now: even the right password is refused, exactly like a wrong one.
    let locked = app.password_grant(&client, "alice", PASSWORD).await;
    assert_eq!(locked.status(), 400);
    let body: serde_json::Value = locked.json().await.expect("json");
    assert_eq!(body["error"], "invalid_grant");
    // Unknown accounts are throttled the same way.
    for _ in 0..=max {
        assert_eq!(
            app.password_grant(&client, "nobody", "not it at all")
                .await
                .status(),
            400
        );
    }
    // Failed logins change no state, so their audit rows are written in batches: poll.
    let rows = login_failures(&app, |rows| reasons(rows, "throttled") >= 2).await;
    let throttled = reasons(&rows, "throttled");
    assert!(throttled >= 2, "throttled refusals are audited");
    // After the backoff the right password works again and resets the counter.
    app.clock
        .advance(app.settings.security.max_backoff.as_secs() as i64 + 1);
    assert_eq!(
        app.password_grant(&client, "alice", PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.password_grant(&client, "alice", "one slip")
            .await
            .status(),
        400
    );
    assert_eq!(
        app.password_grant(&client, "alice", PASSWORD)
            .await
            .status(),
        200
    );
}

/// Attempts are counted before the hash, so concurrent correct logins on one account are
/// briefly "unproven" together; each success must take back what it counted, or a burst of
/// legitimate logins (a shared account behind a busy gateway) would lock the account.
async fn concurrent_correct_logins_never_lock_the_account(backend: Backend) {
    let app = crate::helpers::spawn_app_with(backend, |s| s.passwords.max_concurrent = 4).await;
    let client = app.seed().await;
    let max = app.settings.security.max_failures as usize;
    // `n` logins of alice at once; their statuses.
    let burst = |n: usize, password: &'static str| {
        let logins = (0..n).map(|_| app.password_grant(&client, "alice", password));
        async move {
            futures::future::join_all(logins)
                .await
                .iter()
                .map(|r| r.status().as_u16())
                .collect::<Vec<u16>>()
        }
    };
    for round in 0..3 {
        let statuses = burst(max * 4, PASSWORD).await;
        assert!(
            statuses.iter().all(|s| *s == 200),
            "round {round}: {statuses:?}"
        );
    }
    // One failure short of the lock, the account has room for one check at a time; the first
    // success clears the failures and the others must follow it in, not time out with 503.
    for _ in 1..max {
        assert_eq!(
            app.password_grant(&client, "alice", "not it at all")
                .await
                .status(),
            400
        );
    }
    let statuses = burst(max * 2, PASSWORD).await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "after {} failures: {statuses:?}",
        max - 1
    );

    // A burst of concurrent guesses: exactly `max` of them reach a password check, the lock
    // refuses the rest without hashing, and the right password is refused too.
    assert!(
        burst(max * 4, "not it at all")
            .await
            .iter()
            .all(|s| *s == 400)
    );
    let locked = app.password_grant(&client, "alice", PASSWORD).await;
    assert_eq!(locked.status(), 400, "locked after {max} failures");
    // The max - 1 failures before the correct burst are in the log too.
    let earlier = max - 1;
    let rows = login_failures(&app, |rows| {
        reasons(rows, "wrong_password") + reasons(rows, "throttled") > earlier + max * 4
    })
    .await;
    assert_eq!(
        reasons(&rows, "wrong_password") - earlier,
        max,
        "checked, then locked"
    );
    assert_eq!(reasons(&rows, "throttled"), max * 3 + 1, "refused unhashed");
}

/// By default /metrics has a loopback listener of its own and the OAuth port answers 404, so an
/// anonymous caller cannot read login-failure reasons; `metrics.bind = "main"` is the explicit
/// way back onto the OAuth port.
async fn metrics_stay_off_the_oauth_listener_unless_asked(backend: Backend) {
    let defaults = tessera::config::Settings::load_from(None, &[]).expect("defaults");
    assert_eq!(
        defaults.metrics.bind,
        MetricsBind::Own("127.0.0.1:9464".parse().expect("addr")),
        "the shipped default is loopback, port 9464"
    );

    let app = crate::helpers::spawn_app(backend).await;
    let seeded = app.seed().await;
    // A failed login, so that the reason label exists.
    app.password_grant(&seeded, "alice", "not-the-password")
        .await;
    let main = app.get("/metrics").await;
    assert_eq!(main.status(), 404);
    assert!(!main.text().await.expect("text").contains("tessera_"));
    let port = app.metrics_port.expect("a metrics listener of its own");
    let separate = app
        .http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(separate.status(), 200);
    let text = separate.text().await.expect("text");
    assert!(text.contains("tessera_build_info"));
    assert!(
        text.contains("tessera_login_failures_total{reason=\"wrong_password\"}"),
        "the reasons stay as labels on the private port"
    );
    let other = app
        .http
        .get(format!("http://127.0.0.1:{port}/oauth/token"))
        .send()
        .await
        .expect("other");
    assert_eq!(other.status(), 404, "only /metrics on the metrics listener");

    let on_main =
        crate::helpers::spawn_app_with(backend, |s| s.metrics.bind = MetricsBind::Main).await;
    assert_eq!(on_main.metrics_port, None);
    let main = on_main
        .http
        .get(on_main.url("/metrics"))
        .send()
        .await
        .expect("main");
    assert_eq!(main.status(), 200);
}

both_backends!(
    concurrent_correct_logins_never_lock_the_account,
    metrics_stay_off_the_oauth_listener_unless_asked,
    metrics_parse_and_move,
    throttling_refuses_after_repeated_failures
);
