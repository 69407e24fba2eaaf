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

crate::both_backends!(
    expired_sessions_and_codes_are_cleaned_up,
    a_password_change_or_disable_ends_the_sessions,
    refresh_tokens_end_with_the_session_unless_offline,
    signing_in_again_keeps_the_tokens_issued_before,
);
