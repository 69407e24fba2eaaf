//! What a login session's end takes with it, and what it does not: a password change or a
//! disabled account ends it; refresh tokens without offline_access end with it at the latest;
//! signing in again as the same user keeps the tokens issued before.

use super::agent::Browser;
use super::fixture;
use crate::helpers::{Backend, PASSWORD, refresh_token_of};

pub async fn a_password_change_or_disable_ends_the_sessions(backend: Backend) {
    let mut f = fixture(backend).await;
    f.code().await;
    let stolen = f.browser.cookies.clone();
    f.app
        .admin
        .set_password("alice", "another long password")
        .await
        .expect("set password");
    let mut thief = Browser::new(&f.app.address);
    thief.cookies = stolen;
    assert!(
        thief.get(&f.path("web", &[])).await.is_login_page(),
        "password changed"
    );

    let mut f = fixture(backend).await;
    f.code().await;
    let stolen = f.browser.cookies.clone();
    f.app
        .admin
        .set_disabled("alice", true)
        .await
        .expect("disable");
    f.app
        .admin
        .set_disabled("alice", false)
        .await
        .expect("enable");
    let mut thief = Browser::new(&f.app.address);
    thief.cookies = stolen;
    assert!(
        thief.get(&f.path("web", &[])).await.is_login_page(),
        "disabled once"
    );
}

pub async fn refresh_tokens_end_with_the_session_unless_offline(backend: Backend) {
    let mut f = fixture(backend).await;
    let code = f.code().await;
    let online = f.redeem(&code).await;
    let back = f
        .sign_in_and_allow(&[("scope", "openid offline_access")])
        .await;
    let offline = f.redeem(&back.redirect_param("code").expect("code")).await;
    // Past the session's absolute lifetime (12 h by default), nothing ended it explicitly.
    f.app.clock.advance(12 * 3600 + 60);
    assert_eq!(
        f.app
            .refresh(&f.web, &refresh_token_of(&online))
            .await
            .status(),
        400,
        "without offline_access: no longer than the session"
    );
    assert_eq!(
        f.app
            .refresh(&f.web, &refresh_token_of(&offline))
            .await
            .status(),
        200,
        "offline_access: its own lifetime"
    );
}

pub async fn signing_in_again_keeps_the_tokens_issued_before(backend: Backend) {
    let mut f = fixture(backend).await;
    let code = f.code().await;
    let tokens = f.redeem(&code).await;
    let again = f.browser.get(&f.path("web", &[("prompt", "login")])).await;
    let back = f.browser.sign_in(&again, "alice", PASSWORD).await;
    assert!(back.redirect_param("code").is_some());
    let refreshed = f.app.refresh(&f.web, &refresh_token_of(&tokens)).await;
    assert_eq!(
        refreshed.status(),
        200,
        "the same user signing in again ends no app's tokens"
    );
    let refreshed: serde_json::Value = refreshed.json().await.expect("json");
    // ... and they now belong to the new session: ending it ends them.
    let sessions = f.app.admin.login_sessions("alice").await.expect("list");
    assert_eq!(sessions.len(), 1);
    f.app
        .admin
        .end_login_sessions(Some(&sessions[0].id), None)
        .await
        .expect("end");
    let ended = f.app.refresh(&f.web, &refresh_token_of(&refreshed)).await;
    assert_eq!(ended.status(), 400);
}

pub async fn expired_sessions_and_codes_are_cleaned_up(backend: Backend) {
    let mut f = fixture(backend).await;
    let code = f.code().await;
    f.redeem(&code).await;
    f.code().await;
    let nothing = f.app.admin.gc().await.expect("gc");
    assert_eq!(nothing.rows.login_sessions, 0, "a live session stays");
    assert_eq!(
        nothing.rows.authorization_codes, 0,
        "codes stay while a replay must be caught"
    );
    // Past the session's lifetime and the replay window (tokens.refresh_reuse_detection, 1 d).
    f.app.clock.advance(2 * 86_400 + 60);
    let report = f.app.admin.gc().await.expect("gc");
    assert_eq!(report.rows.login_sessions, 1);
    assert_eq!(report.rows.authorization_codes, 2);
    let again = f.app.admin.gc().await.expect("gc");
    assert_eq!(
        (again.rows.login_sessions, again.rows.authorization_codes),
        (0, 0)
    );
}

pub async fn a_session_gone_idle_still_hands_on_or_ends_what_it_started(backend: Backend) {
    let mut f = fixture(backend).await;
    let code = f.code().await;
    let tokens = f.redeem(&code).await;
    // Idle past login.session_idle_ttl (2 h), within the absolute lifetime.
    f.app.clock.advance(2 * 3600 + 60);
    let login = f.browser.get(&f.path("web", &[])).await;
    assert!(login.is_login_page(), "the idle session no longer signs in");
    let back = f.browser.sign_in(&login, "alice", PASSWORD).await;
    assert!(back.redirect_param("code").is_some() || back.is_consent_page());
    // The refresh token of the idle session moved to the new one: signing out ends it.
    let refreshed = f.app.refresh(&f.web, &refresh_token_of(&tokens)).await;
    assert_eq!(refreshed.status(), 200);
    let refreshed: serde_json::Value = refreshed.json().await.expect("json");
    f.browser.sign_out().await;
    assert_eq!(
        f.app
            .refresh(&f.web, &refresh_token_of(&refreshed))
            .await
            .status(),
        400,
        "ended with the session it moved to"
    );

    // An idle session is still found by `session revoke --user`, with what it started.
    let mut f = fixture(backend).await;
    let code = f.code().await;
    let tokens = f.redeem(&code).await;
    f.app.clock.advance(2 * 3600 + 60);
    f.app.admin.gc().await.expect("gc");
    let ended = f
        .app
        .admin
        .end_login_sessions(None, Some("alice"))
        .await
        .expect("end");
    assert_eq!(ended, 1);
    assert_eq!(
        f.app
            .refresh(&f.web, &refresh_token_of(&tokens))
            .await
            .status(),
        400
    );
}

pub async fn redemptions_racing_account_changes_never_fail_or_block_them(backend: Backend) {
    let mut f = fixture(backend).await;
    for round in 0..12 {
        let login = f.browser.get(&f.path("web", &[("prompt", "login")])).await;
        let password = if round == 0 {
            PASSWORD.to_owned()
        } else {
            format!("password of round {}", round - 1)
        };
        let mut back = f.browser.sign_in(&login, "alice", &password).await;
        if back.is_consent_page() {
            back = f.browser.decide(&back, true).await;
        }
        let mut codes = vec![back.redirect_param("code").expect("code")];
        for _ in 0..7 {
            codes.push(f.code().await);
        }
        let redemptions = futures::future::join_all(
            codes
                .iter()
                .map(|code| f.exchange(&f.web, code, super::agent::VERIFIER)),
        );
        let change = async {
            if round % 2 == 0 {
                f.app
                    .admin
                    .set_disabled("alice", true)
                    .await
                    .expect("disable");
                f.app
                    .admin
                    .set_disabled("alice", false)
                    .await
                    .expect("enable");
            }
            f.app
                .admin
                .set_password("alice", &format!("password of round {round}"))
                .await
        };
        let (answers, changed) = tokio::join!(redemptions, change);
        changed.expect("the account change is never refused");
        for (status, body) in &answers {
            assert!(
                *status == 200 || *status == 400,
                "round {round}: {status} {body}"
            );
        }
        // Whatever was issued before the change ended with it.
        for (status, body) in answers {
            if status == 200 {
                let refreshed = f.app.refresh(&f.web, &refresh_token_of(&body)).await;
                assert_eq!(
                    refreshed.status(),
                    400,
                    "round {round}: outlived the change"
                );
            }
        }
    }
}

pub async fn signing_out_of_an_idle_session_ends_what_it_started(backend: Backend) {
    let mut f = fixture(backend).await;
    let code = f.code().await;
    let tokens = f.redeem(&code).await;
    f.app.clock.advance(2 * 3600 + 60);
    let done = f.browser.sign_out().await;
    assert_eq!(done.status, 200);
    assert_eq!(
        f.app
            .refresh(&f.web, &refresh_token_of(&tokens))
            .await
            .status(),
        400
    );
}

pub async fn revoking_consent_spends_the_codes_not_yet_redeemed(backend: Backend) {
    let mut f = fixture(backend).await;
    let code = f.code().await;
    f.app
        .admin
        .revoke_consent("alice", "web")
        .await
        .expect("revoke");
    let (status, body) = f.exchange(&f.web, &code, super::agent::VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

crate::both_backends!(
    redemptions_racing_account_changes_never_fail_or_block_them,
    signing_out_of_an_idle_session_ends_what_it_started,
    revoking_consent_spends_the_codes_not_yet_redeemed,
    a_session_gone_idle_still_hands_on_or_ends_what_it_started,
    expired_sessions_and_codes_are_cleaned_up,
    a_password_change_or_disable_ends_the_sessions,
    refresh_tokens_end_with_the_session_unless_offline,
    signing_in_again_keeps_the_tokens_issued_before,
);

/// Postgres, where a redemption and an account change can run at once: a redemption held up
/// after its first checks (the users table locked by another connection, so the redemption
/// waits to lock its user) while the session ends or the consent is revoked must issue
/// nothing.
mod racing_the_session_end {
    use sqlx::{Connection, Executor};

    use super::super::agent::VERIFIER;
    use super::super::fixture;
    use crate::helpers::Backend;

    async fn held_redemption_then(change: &str) {
        let mut f = fixture(Backend::Postgres).await;
        let code = f.code().await;
        let mut lock = sqlx::PgConnection::connect(&f.app.db.url)
            .await
            .expect("connect");
        lock.execute("BEGIN").await.expect("begin");
        lock.execute("LOCK TABLE users IN EXCLUSIVE MODE")
            .await
            .expect("lock");
        let redeem = {
            let url = f.app.url("/oauth/token");
            let http = f.app.http.clone();
            let auth = crate::helpers::basic(&f.web.id, &f.web.secret);
            tokio::spawn(async move {
                http.post(url)
                    .header("Authorization", auth)
                    .form(&[
                        ("grant_type", "authorization_code"),
                        ("code", code.as_str()),
                        ("redirect_uri", super::super::REDIRECT),
                        ("code_verifier", VERIFIER),
                    ])
                    .send()
                    .await
                    .expect("token")
                    .status()
                    .as_u16()
            })
        };
        // Past its first checks, waiting for its user's row; the change comes a second later
        // than the time the redemption read.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        match change {
            "logout" => {
                let sessions = f.app.admin.login_sessions("alice").await.expect("list");
                f.app
                    .admin
                    .end_login_sessions(Some(&sessions[0].id), None)
                    .await
                    .expect("end");
            }
            _ => f
                .app
                .admin
                .revoke_consent("alice", "web")
                .await
                .expect("revoke"),
        }
        lock.execute("COMMIT").await.expect("commit");
        assert_eq!(redeem.await.expect("join"), 400, "{change}: nothing issued");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_logout_while_a_code_is_redeemed() {
        held_redemption_then("logout").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_consent_revoked_while_a_code_is_redeemed() {
        held_redemption_then("consent").await;
    }
}
