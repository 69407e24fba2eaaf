//! The authorization endpoint's refusals: shown when the client or its redirect URI is not
//! known good (RFC 6749 §4.1.2.1), otherwise sent back to the client; and the forms' CSRF
//! protection.

use super::agent::{Browser, authorize_path};
use super::{REDIRECT, STATE, fixture};
use crate::helpers::{Backend, ISSUER, PASSWORD};

pub async fn unknown_clients_and_redirects_are_shown_not_redirected(backend: Backend) {
    let mut f = fixture(backend).await;
    let long_state = "s".repeat(5000);
    let cases: Vec<(&str, String)> = vec![
        ("no client_id", authorize_path(&[("response_type", "code")])),
        ("unknown client", f.path("nobody", &[])),
        ("SQL in client_id", f.path("x' OR '1'='1", &[])),
        (
            "unregistered redirect",
            f.path("web", &[("redirect_uri", "https://attacker.example/cb")]),
        ),
        (
            "redirect with another path",
            f.path(
                "web",
                &[("redirect_uri", "https://app.example.com/callback/../evil")],
            ),
        ),
        (
            "redirect with a fragment",
            f.path(
                "web",
                &[("redirect_uri", "https://app.example.com/callback#x")],
            ),
        ),
        (
            "redirect with a suffix",
            f.path(
                "web",
                &[("redirect_uri", "https://app.example.com/callbackx")],
            ),
        ),
        (
            "redirect on another host",
            f.path(
                "web",
                &[(
                    "redirect_uri",
                    "https://app.example.com.attacker.example/callback",
                )],
            ),
        ),
        (
            "huge state",
            f.path("web", &[("state", long_state.as_str())]),
        ),
        (
            "a client that may not use it, unregistered",
            f.path("gateway", &[]),
        ),
        (
            "repeated parameter",
            format!("{}&client_id=web", f.path("web", &[])),
        ),
        (
            "invalid percent-encoding",
            "/oauth/authorize?client_id=%ff%fe".into(),
        ),
    ];
    for (why, path) in cases {
        let page = f.browser.get(&path).await;
        assert_eq!(page.status, 400, "{why}: {}", page.body);
        assert!(
            page.headers.get("location").is_none(),
            "{why}: never redirected"
        );
        assert!(
            page.header("content-type").starts_with("text/html"),
            "{why}"
        );
        assert!(
            page.body.contains(r#"role="alert""#),
            "{why}: {}",
            page.body
        );
    }
    // The same through POST (OIDC Core §3.1.2.1).
    let posted = f
        .browser
        .post_with(
            "/oauth/authorize",
            &[("client_id".into(), "nobody".into())],
            &[],
        )
        .await;
    assert_eq!(posted.status, 400);
}

/// Why, the parameters changed, the error expected back.
type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);

pub async fn other_errors_go_back_to_the_client(backend: Backend) {
    let mut f = fixture(backend).await;
    let cases: Vec<Case> = vec![
        (
            "no response_type",
            vec![("response_type", "")],
            "invalid_request",
        ),
        (
            "implicit",
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (
            "hybrid",
            vec![("response_type", "code id_token")],
            "unsupported_response_type",
        ),
        ("no PKCE", vec![("code_challenge", "")], "invalid_request"),
        (
            "plain PKCE",
            vec![("code_challenge_method", "plain")],
            "invalid_request",
        ),
        (
            "no PKCE method",
            vec![("code_challenge_method", "")],
            "invalid_request",
        ),
        (
            "short challenge",
            vec![("code_challenge", "abc")],
            "invalid_request",
        ),
        (
            "scope not allowed",
            vec![("scope", "openid admin")],
            "invalid_scope",
        ),
        (
            "bad scope characters",
            vec![("scope", "openid \"x\"")],
            "invalid_scope",
        ),
        (
            "form_post",
            vec![("response_mode", "form_post")],
            "invalid_request",
        ),
        (
            "request object",
            vec![("request", "eyJ.x.y")],
            "request_not_supported",
        ),
        (
            "request_uri",
            vec![("request_uri", "urn:x")],
            "request_uri_not_supported",
        ),
        (
            "bad prompt",
            vec![("prompt", "none login")],
            "invalid_request",
        ),
        (
            "unknown prompt",
            vec![("prompt", "maybe")],
            "invalid_request",
        ),
        ("bad max_age", vec![("max_age", "-1")], "invalid_request"),
    ];
    for (why, extra, error) in cases {
        let back = f.browser.get(&f.path("web", &extra)).await;
        assert_eq!(back.status, 303, "{why}: {}", back.body);
        assert!(back.header("location").starts_with(REDIRECT), "{why}");
        assert_eq!(
            back.redirect_param("error").as_deref(),
            Some(error),
            "{why}"
        );
        assert_eq!(
            back.redirect_param("state").as_deref(),
            Some(STATE),
            "{why}"
        );
        assert_eq!(back.redirect_param("iss").as_deref(), Some(ISSUER), "{why}");
        assert!(back.redirect_param("code").is_none(), "{why}");
    }
    // A registered client without the grant hears unauthorized_client at its redirect URI.
    f.app
        .admin
        .update_client(
            "web",
            tessera::admin::ClientUpdate {
                grant_types: Some(vec!["refresh_token".into()]),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    // On Postgres the change reaches the server's client cache by NOTIFY, within milliseconds
    // but not at the instant the update returns (README, "Postgres"): asked until it has.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let error = loop {
        let back = f.browser.get(&f.path("web", &[])).await;
        let error = (back.status == 303)
            .then(|| back.redirect_param("error"))
            .flatten();
        if error.is_some() || std::time::Instant::now() > deadline {
            break error;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(error.as_deref(), Some("unauthorized_client"));
}

pub async fn forms_need_their_csrf_token_from_this_site(backend: Backend) {
    let mut f = fixture(backend).await;
    let login = f.browser.get(&f.path("web", &[])).await;
    let mut fields = login.form("/oauth/authorize/login");
    fields.push(("username".into(), "alice".into()));
    fields.push(("password".into(), PASSWORD.into()));
    let without: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, _)| k != "csrf_token")
        .cloned()
        .collect();
    let refused = f.browser.post("/oauth/authorize/login", &without).await;
    assert_eq!(refused.status, 403, "no token");
    let mut wrong = without.clone();
    wrong.push(("csrf_token".into(), "A".repeat(43)));
    assert_eq!(
        f.browser
            .post("/oauth/authorize/login", &wrong)
            .await
            .status,
        403
    );
    // Another site's form, with the right token even: refused by where it came from.
    let cross = f
        .browser
        .post_with(
            "/oauth/authorize/login",
            &fields,
            &[("Sec-Fetch-Site", "cross-site")],
        )
        .await;
    assert_eq!(cross.status, 403);
    // Another browser (no cookie) with this page's token: refused.
    let mut other = Browser::new(&f.app.address);
    assert_eq!(
        other.post("/oauth/authorize/login", &fields).await.status,
        403
    );
    assert!(
        f.app.audit_rows("login.page").await.is_empty(),
        "no password was checked"
    );
    // The real form works.
    let consent = f.browser.post("/oauth/authorize/login", &fields).await;
    assert!(consent.is_consent_page());
    // The consent form needs it too.
    let mut allow = consent.form("/oauth/authorize/consent");
    allow.retain(|(k, _)| k != "csrf_token");
    allow.push(("decision".into(), "allow".into()));
    assert_eq!(
        f.browser
            .post("/oauth/authorize/consent", &allow)
            .await
            .status,
        403
    );
    assert!(f.app.audit_rows("consent.granted").await.is_empty());
}

pub async fn a_consent_form_counts_only_for_the_page_it_was_shown_on(backend: Backend) {
    let mut f = fixture(backend).await;
    let login = f.browser.get(&f.path("web", &[])).await;
    let consent = f.browser.sign_in(&login, "alice", PASSWORD).await;
    let mut allow = consent.form("/oauth/authorize/consent");
    allow.push(("decision".into(), "allow".into()));
    // A request that asks for a fresh sign-in shows the sign-in page; its fields posted to
    // the consent form instead (no password) do not skip it.
    let relogin = f.browser.get(&f.path("web", &[("prompt", "login")])).await;
    assert!(relogin.is_login_page());
    let mut skip = relogin.form("/oauth/authorize/login");
    skip.push(("decision".into(), "allow".into()));
    let refused = f.browser.post("/oauth/authorize/consent", &skip).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.headers.get("location").is_none());
    // The page that was shown is answered once.
    let back = f.browser.post("/oauth/authorize/consent", &allow).await;
    assert!(back.redirect_param("code").is_some(), "{}", back.body);
    let again = f.browser.post("/oauth/authorize/consent", &allow).await;
    assert_eq!(again.status, 400, "answered already");
    // A consent page left open too long is not taken either.
    let asked = f
        .browser
        .get(&f.path("web", &[("prompt", "consent")]))
        .await;
    let mut late = asked.form("/oauth/authorize/consent");
    late.push(("decision".into(), "allow".into()));
    f.app.clock.advance(601);
    assert_eq!(
        f.browser
            .post("/oauth/authorize/consent", &late)
            .await
            .status,
        400
    );
}

pub async fn a_public_client_on_a_loopback_redirect_always_asks(backend: Backend) {
    let mut f = fixture(backend).await;
    f.app
        .admin
        .add_client(tessera::admin::ClientSpec {
            client_id: "cli-app".into(),
            name: "A native app".into(),
            grant_types: vec!["authorization_code".into()],
            scopes: vec!["openid".into()],
            redirect_uris: vec!["http://127.0.0.1/cb".into()],
            public: true,
            ..Default::default()
        })
        .await
        .expect("client");
    let path = |f: &super::Fixture, extra: &[(&str, &str)]| {
        let mut pairs = vec![
            ("redirect_uri", "http://127.0.0.1:4444/cb"),
            ("scope", "openid"),
        ];
        pairs.extend_from_slice(extra);
        f.path("cli-app", &pairs)
    };
    let login = f.browser.get(&path(&f, &[])).await;
    let consent = f.browser.sign_in(&login, "alice", PASSWORD).await;
    assert!(consent.is_consent_page());
    let back = f.browser.decide(&consent, true).await;
    assert!(back.redirect_param("code").is_some());
    // Another program listening on another port cannot ride on that consent.
    let again = f.browser.get(&path(&f, &[])).await;
    assert!(again.is_consent_page(), "asked every time");
    let silent = f.browser.get(&path(&f, &[("prompt", "none")])).await;
    assert_eq!(
        silent.redirect_param("error").as_deref(),
        Some("consent_required")
    );
}

pub async fn hostile_forms_get_error_pages_never_a_500(backend: Backend) {
    let mut f = fixture(backend).await;
    let login = f.browser.get(&f.path("web", &[])).await;
    let fields = login.form("/oauth/authorize/login");
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf_token")
        .map(|(_, v)| v.clone())
        .expect("csrf");
    let cookie = format!("tessera_csrf={csrf}");
    let raw = |body: String, content_type: &'static str| {
        let req = f
            .app
            .http
            .post(f.app.url("/oauth/authorize/login"))
            .header("Content-Type", content_type)
            .header("Cookie", cookie.clone())
            .body(body);
        async move { req.send().await.expect("post").status().as_u16() }
    };
    let form = serde_urlencoded::to_string(&fields).expect("form");
    assert_eq!(
        raw(form.clone(), "text/plain").await,
        400,
        "wrong content type"
    );
    assert_eq!(raw(form.clone(), "application/json").await, 400, "JSON");
    let huge = format!("{form}&username={}&password=x", "a".repeat(20_000));
    assert_eq!(
        raw(huge, "application/x-www-form-urlencoded").await,
        400,
        "oversized"
    );
    let nul = format!("{form}&username=al%00ice&password=x");
    assert_eq!(
        raw(nul, "application/x-www-form-urlencoded").await,
        400,
        "NUL"
    );
    let bad_utf8 = format!("{form}&username=%ff%fe&password=x");
    assert_eq!(
        raw(bad_utf8, "application/x-www-form-urlencoded").await,
        400,
        "not UTF-8"
    );
    // Odd but well-formed input is just a failed sign-in.
    for name in [
        "\u{202e}ecila",
        "alice' OR '1'='1",
        "ａｌｉｃｅ",
        "🦀🦀🦀",
        &"x".repeat(300),
    ] {
        let page = f.browser.sign_in(&login, name, "whatever-password").await;
        assert_eq!(page.status, 200, "{name:?}");
        assert!(page.body.contains(r#"role="alert""#), "{name:?}");
    }
    // The token endpoint: codes that are not ours, of every shape.
    for code in ["", "tsa_", &"a".repeat(5000), "tsa_\u{0}", "' OR 1=1 --"] {
        let response = f
            .app
            .token(
                Some(&f.web),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", super::agent::VERIFIER),
                ],
            )
            .await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(status, 400, "{code:?}: {body}");
        assert!(
            matches!(
                body["error"].as_str(),
                Some("invalid_grant" | "invalid_request")
            ),
            "{code:?}: {body}"
        );
    }
    assert!(!f.app.audit_rows("login.failure").await.is_empty());
}

crate::both_backends!(
    hostile_forms_get_error_pages_never_a_500,
    unknown_clients_and_redirects_are_shown_not_redirected,
    other_errors_go_back_to_the_client,
    forms_need_their_csrf_token_from_this_site,
    a_consent_form_counts_only_for_the_page_it_was_shown_on,
    a_public_client_on_a_loopback_redirect_always_asks,
);
