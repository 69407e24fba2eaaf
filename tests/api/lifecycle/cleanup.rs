//! Clean-up deletes what has expired and nothing else.

use super::*;

async fn count(url: &str, table: &str) -> i64 {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.expect("connect");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .expect("count");
    let _ = conn.close().await;
    n
}

const TABLES: [&str; 8] = [
    "users",
    "roles",
    "user_roles",
    "clients",
    "signing_keys",
    "refresh_families",
    "refresh_tokens",
    "access_denylist",
];

async fn counts(app: &TestApp) -> std::collections::BTreeMap<&'static str, i64> {
    let mut out = std::collections::BTreeMap::new();
    for table in TABLES {
        out.insert(table, count(&app.db.url, table).await);
    }
    out
}

async fn gc_deletes_what_has_expired_and_nothing_else(backend: Backend) {
    const DAY: i64 = 86_400;
    let app = spawn_app_with(backend, |s| {
        s.tokens.refresh_idle_ttl = Duration::from_secs(DAY as u64);
        s.tokens.refresh_absolute_ttl = Duration::from_secs(2 * DAY as u64);
        s.audit.retention = Duration::from_secs(DAY as u64);
        s.maintenance.gc_interval = Duration::ZERO;
    })
    .await;
    let client = seed_with_introspection(&app).await;

    // T0: family A, rotated once; an access token X revoked.
    let login_a = app.login(&client).await;
    let (status, body) = refresh_status(&app, &client, &refresh_token_of(&login_a)).await;
    assert_eq!(status, 200);
    let a1 = refresh_token_of(&body);
    let x = access_token_of(&login_a);
    assert_eq!(revoke(&app, &client, &[("token", &x)]).await.status(), 200);

    // T0 + 1d + 100: family C, rotated once (both tokens idle-expire before the clean-up).
    app.clock.advance(DAY + 100);
    let login_c = app.login(&client).await;
    let (status, body) = refresh_status(&app, &client, &refresh_token_of(&login_c)).await;
    assert_eq!(status, 200);
    let c1 = refresh_token_of(&body);

    // T0 + 2d + 300: family A has expired. Family B, rotated once (the rotated b0 must stay for
    // reuse detection); an access token Y revoked, not yet expired; family D revoked, live.
    app.clock.advance(DAY + 200);
    let login_b = app.login(&client).await;
    let b0 = refresh_token_of(&login_b);
    let (status, body) = refresh_status(&app, &client, &b0).await;
    assert_eq!(status, 200);
    let b1 = refresh_token_of(&body);
    let y = access_token_of(&body);
    assert_eq!(revoke(&app, &client, &[("token", &y)]).await.status(), 200);
    let d0 = refresh_token_of(&app.login(&client).await);
    assert_eq!(revoke(&app, &client, &[("token", &d0)]).await.status(), 200);

    let before = counts(&app).await;
    assert_eq!(before["refresh_families"], 4, "A, B, C, D");
    assert_eq!(before["refresh_tokens"], 7, "a0 a1 c0 c1 b0 b1 d0");
    assert_eq!(before["access_denylist"], 2, "X and Y");
    let audit_before = app
        .admin
        .store
        .audit_query(&AuditFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("audit");
    let cutoff = app.clock.now() - DAY;
    let (old, kept): (Vec<_>, Vec<_>) = audit_before.iter().partition(|r| r.at < cutoff);
    assert!(!old.is_empty() && !kept.is_empty());
    assert!(
        audit_before.iter().all(|r| (r.at - cutoff).abs() > 30),
        "no audit row near the cut-off"
    );

    let report = serde_json::to_value(app.admin.gc().await.expect("gc")).expect("report");
    assert_eq!(report["refresh_families"], 2, "A expired, C idle: {report}");
    assert_eq!(report["denylist"], 1, "{report}");
    // Postgres drops whole day partitions: a row goes once its whole (UTC) day is past the
    // cut-off, so rows of the day the cut-off falls in may stay up to a day longer.
    let day_end = |at: i64| (at.div_euclid(DAY) + 1) * DAY;
    let (old, straddling): (Vec<_>, Vec<_>) = match backend {
        Backend::Sqlite => {
            assert_eq!(report["audit_rows"], old.len() as i64, "{report}");
            (old, Vec::new())
        }
        Backend::Postgres => {
            assert!(report["audit_partitions"].as_i64() >= Some(1), "{report}");
            old.into_iter().partition(|r| day_end(r.at) <= cutoff)
        }
    };
    assert!(!old.is_empty());

    let after = counts(&app).await;
    assert_eq!(
        after["refresh_families"], 2,
        "A (expired) and C (its live token idle-expired) went; B and D stay"
    );
    assert_eq!(after["refresh_tokens"], 3, "b0 b1 d0 stay");
    assert_eq!(after["access_denylist"], 1, "Y stays");
    for table in ["users", "roles", "user_roles", "clients", "signing_keys"] {
        assert_eq!(after[table], before[table], "{table} untouched");
    }
    let audit_after = app
        .admin
        .store
        .audit_query(&AuditFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .expect("audit");
    let ids_after: Vec<i64> = audit_after.iter().map(|r| r.id).collect();
    assert!(
        kept.iter().all(|r| ids_after.contains(&r.id)),
        "recent audit rows stay"
    );
    assert!(
        old.iter().all(|r| !ids_after.contains(&r.id)),
        "old audit rows go"
    );
    assert!(
        straddling.iter().all(|r| ids_after.contains(&r.id)),
        "rows of the day the cut-off falls in wait for their day to pass"
    );

    // What stayed still behaves: Y is still revoked, D still revoked, A and C dead, and the
    // kept rotated b0 still triggers reuse detection.
    assert_eq!(introspect(&app, &client, &y).await, inactive());
    assert_eq!(introspect(&app, &client, &d0).await, inactive());
    for token in [&a1, &c1, &d0] {
        let (status, _) = refresh_status(&app, &client, token).await;
        assert_eq!(status, 400);
    }
    let (status, body) = refresh_status(&app, &client, &b1).await;
    assert_eq!(status, 200);
    let b2 = refresh_token_of(&body);
    let (status, _) = refresh_status(&app, &client, &b0).await;
    assert_eq!(status, 400);
    let (status, _) = refresh_status(&app, &client, &b2).await;
    assert_eq!(status, 400, "reuse of b0 revoked family B");

    // A second run finds nothing more.
    let again = serde_json::to_value(app.admin.gc().await.expect("gc")).expect("report");
    assert_eq!(again["refresh_families"], 0);
    assert_eq!(again["refresh_tokens"], 0);
    assert_eq!(again["denylist"], 0);
    assert_eq!(again["audit_rows"], 0);
    assert_eq!(again["audit_partitions"], 0);
}

both_backends!(gc_deletes_what_has_expired_and_nothing_else,);
