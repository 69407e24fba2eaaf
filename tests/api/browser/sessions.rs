//! Login sessions: a new one at every sign-in, listed and ended with the CLI, ended by
//! RP-initiated logout; consents listed and revoked; the pages' protective headers.

use serde_json::Value;

use super::agent::Browser;
use super::{REDIRECT, fixture};
use crate::helpers::{Backend, PASSWORD, refresh_token_of};

pub async fn a_sign_in_always_starts_a_new_session(backend: Backend) {
    let mut f = fixture(backend).await;
    // An attacker plants a session id in the victim's browser: it is never adopted.
    let planted = "tsb_planted-by-an-attacker-000000000000000000000";
    f.browser
        .cookies
        .insert("tessera_session".into(), planted.into());
    f.code().await;
    let first = f.browser.cookie("tessera_session");
    assert_ne!(first, planted);
    // Signing in again replaces the session, and the old one no longer signs anyone in.
    let relogin = f.browser.get(&f.path("web", &[("prompt", "login")])).await;
    let back = f.browser.sign_in(&relogin, "alice", PASSWORD).await;
    assert!(back.redirect_param("code").is_some());
    let second = f.browser.cookie("tessera_session");
    assert_ne!(first, second);
    let set = f
        .browser
        .last_set_cookies
        .iter()
        .find(|l| l.starts_with("tessera_session="))
        .expect("a new session cookie");
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(
        !set.contains("Secure"),
        "plain http here: no Secure flag, no __Host- prefix"
    );
    let mut old = Browser::new(&f.app.address);
    old.cookies.insert("tessera_session".into(), first);
    let page = old.get(&f.path("web", &[])).await;
    assert!(page.is_login_page(), "the replaced session is over");
    assert_eq!(
        f.app
            .admin
            .login_sessions("alice")
            .await
            .expect("list")
            .len(),
        1
    );
}

pub async fn sessions_and_consents_are_listed_and_revoked(backend: Backend) {
    let mut f = fixture(backend).await;
    let code = f.code().await;
    let tokens = f.redeem(&code).await;
    let (ok, out, err) = f.app.cli(&["session", "list", "alice", "--json"]).await;
    assert!(ok, "{err}");
    let sessions: Value = serde_json::from_str(&out).expect("json");
    let sid = sessions[0]["session_id"].as_str().expect("id").to_owned();
    assert_eq!(sessions.as_array().map(Vec::len), Some(1));
    let (ok, out, _) = f.app.cli(&["consent", "list", "alice", "--json"]).await;
    assert!(ok);
    let consents: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(consents[0]["client_id"], "web");
    assert_eq!(consents[0]["scope"], "openid profile email");

    // Ending the session ends the refresh tokens issued in it.
    let (ok, out, err) = f.app.cli(&["session", "revoke", &sid]).await;
    assert!(ok, "{err}");
    assert!(out.contains("ended"), "{out}");
    assert_eq!(
        f.app
            .refresh(&f.web, &refresh_token_of(&tokens))
            .await
            .status(),
        400
    );
    assert!(f.browser.get(&f.path("web", &[])).await.is_login_page());
    let (ok, _, err) = f.app.cli(&["session", "revoke", &sid]).await;
    assert!(!ok && err.contains("no live session"), "{err}");

    // offline_access outlives the session.
    let back = f
        .sign_in_and_allow(&[("scope", "openid offline_access")])
        .await;
    let offline = f.redeem(&back.redirect_param("code").expect("code")).await;
    let (ok, _, _) = f.app.cli(&["session", "revoke", "--user", "alice"]).await;
    assert!(ok);
    let refreshed = f.app.refresh(&f.web, &refresh_token_of(&offline)).await;
    assert_eq!(
        refreshed.status(),
        200,
        "offline_access survives the session"
    );

    // Revoking consent asks again, and revokes the client's tokens for alice.
    let refreshed: Value = refreshed.json().await.expect("json");
    let (ok, _, err) = f.app.cli(&["consent", "revoke", "alice", "web"]).await;
    assert!(ok, "{err}");
    assert_eq!(
        f.app
            .refresh(&f.web, &refresh_token_of(&refreshed))
            .await
            .status(),
        400
    );
    let login = f.browser.get(&f.path("web", &[])).await;
    let consent = f.browser.sign_in(&login, "alice", PASSWORD).await;
    assert!(consent.is_consent_page(), "asked again");
    let (ok, _, err) = f.app.cli(&["consent", "revoke", "alice", "nobody"]).await;
    assert!(!ok, "{err}");
    assert!(!f.app.audit_rows("session.end").await.is_empty());
    assert_eq!(f.app.audit_rows("consent.revoke").await.len(), 1);
}

pub async fn logout_ends_the_session_and_goes_back_only_where_registered(backend: Backend) {
    let mut f = fixture(backend).await;
    let code = f.code().await;
    let tokens = f.redeem(&code).await;
    let id_token = tokens["id_token"].as_str().expect("id_token").to_owned();
    let logout = |extra: &[(&str, &str)]| {
        let query = serde_urlencoded::to_string(extra).expect("query");
        format!("/oauth/logout?{query}")
    };
    // A redirect not registered, or a forged hint: a page, no redirect.
    let bad = f
        .browser
        .get(&logout(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", "https://attacker.example/"),
        ]))
        .await;
    assert_eq!(bad.status, 400);
    assert!(bad.headers.get("location").is_none());
    let forged = format!("{}x", &id_token[..id_token.len() - 1]);
    let bad = f.browser.get(&logout(&[("id_token_hint", &forged)])).await;
    assert_eq!(bad.status, 400);
    let bad = f
        .browser
        .get(&logout(&[(
            "post_logout_redirect_uri",
            "https://app.example.com/bye",
        )]))
        .await;
    assert_eq!(
        bad.status, 400,
        "a redirect without a client to check it against"
    );
    assert!(
        f.browser
            .get(&f.path("web", &[("prompt", "none")]))
            .await
            .redirect_param("code")
            .is_some(),
        "still signed in"
    );

    // Another user's ID token (or a stale one of an earlier session) does not sign this
    // browser out: the user is asked.
    let mut bob = Browser::new(&f.app.address);
    f.app
        .admin
        .add_user("bob", PASSWORD, &[], false)
        .await
        .expect("bob");
    let login = bob.get(&f.path("web", &[])).await;
    let consent = bob.sign_in(&login, "bob", PASSWORD).await;
    let back = bob.decide(&consent, true).await;
    let bobs = f.redeem(&back.redirect_param("code").expect("code")).await;
    let bobs_hint = bobs["id_token"].as_str().expect("id_token");
    let ask = f
        .browser
        .get(&logout(&[
            ("id_token_hint", bobs_hint),
            ("post_logout_redirect_uri", "https://app.example.com/bye"),
        ]))
        .await;
    assert_eq!(ask.status, 200, "asked, not signed out: {}", ask.body);
    assert!(ask.body.contains("/oauth/logout/confirm"));
    assert!(
        !ask.headers
            .get_all("set-cookie")
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.starts_with("tessera_session="))),
        "the browser keeps its session"
    );
    assert!(
        bob.get(&f.path("web", &[("prompt", "none")]))
            .await
            .redirect_param("code")
            .is_some(),
        "bob's session untouched"
    );

    // Without a hint the user is asked: a link elsewhere cannot sign them out.
    let ask = f.browser.get(&logout(&[])).await;
    assert_eq!(ask.status, 200);
    assert!(ask.body.contains("/oauth/logout/confirm"));
    assert!(
        f.browser
            .get(&f.path("web", &[("prompt", "none")]))
            .await
            .redirect_param("code")
            .is_some()
    );

    // With the hint: ended at once, sent back with the state.
    let done = f
        .browser
        .get(&logout(&[
            ("id_token_hint", &id_token),
            ("post_logout_redirect_uri", "https://app.example.com/bye"),
            ("state", "bye-state"),
        ]))
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        done.header("location")
            .starts_with("https://app.example.com/bye")
    );
    assert_eq!(done.redirect_param("state").as_deref(), Some("bye-state"));
    let none = f.browser.get(&f.path("web", &[("prompt", "none")])).await;
    assert_eq!(
        none.redirect_param("error").as_deref(),
        Some("login_required")
    );
    assert_eq!(
        f.app
            .refresh(&f.web, &refresh_token_of(&tokens))
            .await
            .status(),
        400
    );

    // Confirmed by the user, through the form.
    f.code().await;
    let done = f.browser.sign_out().await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("signed out"), "{}", done.body);
    let none = f.browser.get(&f.path("web", &[("prompt", "none")])).await;
    assert_eq!(
        none.redirect_param("error").as_deref(),
        Some("login_required")
    );
    let _ = REDIRECT;
}

pub async fn pages_cannot_be_framed_cached_or_script_run(backend: Backend) {
    let mut f = fixture(backend).await;
    let login = f.browser.get(&f.path("web", &[])).await;
    let csp = login.header("content-security-policy");
    for directive in [
        "default-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "style-src 'self'",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    assert!(!csp.contains("script-src"), "no script is allowed at all");
    assert!(!login.body.contains("<script"), "no script in the page");
    assert_eq!(login.header("x-frame-options"), "DENY");
    assert_eq!(login.header("x-content-type-options"), "nosniff");
    assert_eq!(login.header("referrer-policy"), "no-referrer");
    assert_eq!(login.header("cache-control"), "no-store");
    // A state that tries to break out of its attribute is escaped.
    let hostile = f
        .browser
        .get(&f.path(
            "web",
            &[
                ("state", "\"><script>alert(1)</script>"),
                ("login_hint", "<img src=x onerror=alert(1)>"),
            ],
        ))
        .await;
    assert!(hostile.is_login_page());
    assert!(!hostile.body.contains("<script>alert"), "{}", hostile.body);
    assert!(!hostile.body.contains("<img src=x"), "{}", hostile.body);
    let css = f.browser.get("/assets/tessera.css").await;
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").starts_with("text/css"));
}

crate::both_backends!(
    a_sign_in_always_starts_a_new_session,
    sessions_and_consents_are_listed_and_revoked,
    logout_ends_the_session_and_goes_back_only_where_registered,
    pages_cannot_be_framed_cached_or_script_run,
);
