//! The flow that works: sign-in, consent, code, tokens, single sign-on, prompt values.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::agent::{Browser, CHALLENGE, VERIFIER, challenge_of};
use super::{NONCE, REDIRECT, STATE, add_web_client, fixture};
use crate::helpers::{Backend, ISSUER, PASSWORD, access_token_of, claims, refresh_token_of};

pub async fn signs_in_consents_and_redeems_the_code(backend: Backend) {
    let mut f = fixture(backend).await;
    let login = f.browser.get(&f.path("web", &[])).await;
    assert!(login.is_login_page(), "{}", login.body);
    assert!(
        login.body.contains("The web app"),
        "the client's name is shown"
    );
    let consent = f.browser.sign_in(&login, "alice", PASSWORD).await;
    assert!(consent.is_consent_page(), "{}", consent.body);
    for scope in ["openid", "profile", "email"] {
        assert!(
            consent.body.contains(&format!("<code>{scope}</code>")),
            "{scope} listed"
        );
    }
    let back = f.browser.decide(&consent, true).await;
    assert_eq!(back.status, 303);
    let location = back.location();
    assert_eq!(
        format!(
            "{}://{}{}",
            location.scheme(),
            location.host_str().unwrap_or(""),
            location.path()
        ),
        REDIRECT
    );
    assert_eq!(back.redirect_param("state").as_deref(), Some(STATE));
    assert_eq!(
        back.redirect_param("iss").as_deref(),
        Some(ISSUER),
        "RFC 9207"
    );
    let code = back.redirect_param("code").expect("code");
    assert!(code.starts_with("tsa_"));

    let tokens = f.redeem(&code).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "openid profile email");
    let access = access_token_of(&tokens);
    let id_token = tokens["id_token"].as_str().expect("id_token").to_owned();
    let id = claims(&id_token);
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(id_token.split('.').next().expect("header"))
            .expect("b64"),
    )
    .expect("json");
    assert_eq!(header["typ"], "JWT", "an ID token is not an access token");
    let alice = f.app.admin.user("alice").await.expect("alice");
    assert_eq!(id["iss"], ISSUER);
    assert_eq!(id["sub"], alice.id.as_str());
    assert_eq!(id["aud"], "web");
    assert_eq!(id["nonce"], NONCE);
    assert!(
        id["auth_time"]
            .as_i64()
            .is_some_and(|t| t <= id["iat"].as_i64().unwrap_or(0))
    );
    assert!(id["sid"].as_str().is_some_and(|s| !s.is_empty()));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    assert_eq!(
        id["at_hash"].as_str(),
        Some(URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]).as_str()),
        "at_hash is the left half of SHA-256 of the access token"
    );
    // The ID token verifies against the published keys.
    let jwks: Value = f
        .app
        .http
        .get(f.app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let kid = crate::helpers::kid_of(&id_token);
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .expect("the signing key is published");
    let key =
        jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).expect("jwk"))
            .expect("key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["web"]);
    validation.set_issuer(&[ISSUER]);
    jsonwebtoken::decode::<Value>(&id_token, &key, &validation).expect("the ID token verifies");

    // Userinfo: what the scopes allow.
    let info: Value = f
        .app
        .http
        .get(f.app.url("/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("json");
    assert_eq!(info["sub"], alice.id.as_str());
    assert_eq!(info["preferred_username"], "alice");
    assert_eq!(info["email"], "alice@example.com");
    assert_eq!(info["email_verified"], true);
    assert_eq!(info["name"], "Alice Example");

    // The refresh token rotates like any other.
    let refreshed = f.app.refresh(&f.web, &refresh_token_of(&tokens)).await;
    assert_eq!(refreshed.status(), 200);

    for action in [
        "login.page",
        "consent.granted",
        "code.issued",
        "code.redeemed",
    ] {
        let rows = f.app.audit_rows(action).await;
        assert_eq!(rows.len(), 1, "{action} audited once");
        assert_eq!(rows[0].outcome, "success", "{action}");
    }
}

pub async fn single_sign_on_and_prompt_values(backend: Backend) {
    let mut f = fixture(backend).await;
    f.code().await;
    // Signed in and consent remembered: straight back with a code.
    let again = f.browser.get(&f.path("web", &[])).await;
    assert!(again.redirect_param("code").is_some(), "{}", again.body);
    let silent = f.browser.get(&f.path("web", &[("prompt", "none")])).await;
    assert!(
        silent.redirect_param("code").is_some(),
        "prompt=none with a session"
    );
    // A scope not yet allowed needs consent; prompt=none cannot ask.
    let wider = f
        .browser
        .get(&f.path("web", &[("scope", "openid read"), ("prompt", "none")]))
        .await;
    assert_eq!(
        wider.redirect_param("error").as_deref(),
        Some("consent_required")
    );
    assert_eq!(wider.redirect_param("state").as_deref(), Some(STATE));
    let asked = f
        .browser
        .get(&f.path("web", &[("prompt", "consent")]))
        .await;
    assert!(asked.is_consent_page(), "prompt=consent asks again");
    let relogin = f.browser.get(&f.path("web", &[("prompt", "login")])).await;
    assert!(relogin.is_login_page(), "prompt=login signs in again");
    // max_age: a sign-in older than that is not enough.
    f.app.clock.advance(120);
    let stale = f.browser.get(&f.path("web", &[("max_age", "60")])).await;
    assert!(stale.is_login_page(), "max_age=60 after 120 s");
    let fresh = f.browser.get(&f.path("web", &[("max_age", "600")])).await;
    assert!(fresh.redirect_param("code").is_some());
    // A browser with no session: login_required, sent back.
    let mut stranger = Browser::new(&f.app.address);
    let none = stranger.get(&f.path("web", &[("prompt", "none")])).await;
    assert_eq!(
        none.redirect_param("error").as_deref(),
        Some("login_required")
    );
    assert_eq!(none.redirect_param("iss").as_deref(), Some(ISSUER));
    // login_hint fills in the username.
    let hinted = stranger.get(&f.path("web", &[("login_hint", "bob")])).await;
    assert!(hinted.body.contains(r#"value="bob""#), "{}", hinted.body);
}

pub async fn a_first_party_client_is_not_asked_for_consent(backend: Backend) {
    let mut f = fixture(backend).await;
    let own = add_web_client(&f.app, "own", true).await;
    let login = f.browser.get(&f.path("own", &[])).await;
    let back = f.browser.sign_in(&login, "alice", PASSWORD).await;
    let code = back
        .redirect_param("code")
        .expect("no consent page for a first-party client");
    let (status, body) = f.exchange(&own, &code, VERIFIER).await;
    assert_eq!(status, 200, "{body}");
    let asked = f
        .browser
        .get(&f.path("own", &[("prompt", "consent")]))
        .await;
    assert!(
        asked.is_consent_page(),
        "prompt=consent asks even for a first-party client"
    );
}

pub async fn a_public_client_redeems_with_pkce_alone(backend: Backend) {
    let mut f = fixture(backend).await;
    f.app
        .admin
        .add_client(tessera::admin::ClientSpec {
            client_id: "spa".into(),
            name: "SPA".into(),
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scopes: vec!["openid".into()],
            redirect_uris: vec![REDIRECT.into()],
            public: true,
            ..Default::default()
        })
        .await
        .expect("spa");
    let verifier = "a-fresh-verifier-that-is-long-enough-0123456789";
    let challenge = challenge_of(verifier);
    let path = f.path(
        "spa",
        &[("scope", "openid"), ("code_challenge", challenge.as_str())],
    );
    let login = f.browser.get(&path).await;
    let consent = f.browser.sign_in(&login, "alice", PASSWORD).await;
    let back = f.browser.decide(&consent, true).await;
    let code = back.redirect_param("code").expect("code");
    let exchange = |verifier: &'static str| {
        let app = &f.app;
        let code = code.clone();
        async move {
            let r = app
                .token(
                    None,
                    &[
                        ("grant_type", "authorization_code"),
                        ("client_id", "spa"),
                        ("code", &code),
                        ("redirect_uri", REDIRECT),
                        ("code_verifier", verifier),
                    ],
                )
                .await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.expect("json"))
        }
    };
    let (status, body) = exchange(VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "another verifier"
    );
    let (status, body) = exchange("a-fresh-verifier-that-is-long-enough-0123456789").await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id_token"].is_string());
    assert_ne!(challenge, CHALLENGE);
}

pub async fn failed_sign_ins_are_throttled_and_audited(backend: Backend) {
    let mut f = fixture(backend).await;
    let login = f.browser.get(&f.path("web", &[])).await;
    let wrong = f.browser.sign_in(&login, "alice", "not the password").await;
    assert!(wrong.is_login_page());
    assert!(wrong.body.contains(r#"role="alert""#), "{}", wrong.body);
    assert!(wrong.body.contains(r#"aria-describedby="form-error""#));
    assert!(
        wrong.body.contains(r#"value="alice""#),
        "the username is kept"
    );
    assert!(
        !f.browser.cookies.keys().any(|k| k.contains("session")),
        "no session"
    );
    let unknown = f
        .browser
        .sign_in(&login, "nobody", "not the password")
        .await;
    assert_eq!(
        wrong.body.replace("alice", "X"),
        unknown.body.replace("nobody", "X"),
        "an unknown user reads the same"
    );
    let failures = f.app.audit_rows("login.failure").await;
    assert_eq!(failures.len(), 2);
    assert!(
        failures
            .iter()
            .all(|r| r.outcome == "failure"
                && r.details.contains("\"grant\":\"authorization_code\""))
    );
    assert!(
        f.app.audit_rows("login.page").await.is_empty(),
        "login.page is a success"
    );
    // The same lock as the password grant: after max_failures, even the right password fails.
    for _ in 0..5 {
        f.browser.sign_in(&login, "alice", "still wrong").await;
    }
    let locked = f
        .browser
        .sign_in(&login, "alice", crate::helpers::PASSWORD)
        .await;
    assert!(locked.is_login_page(), "locked: {}", locked.status);
    let grant = f.app.password_grant(&f.gateway, "alice", PASSWORD).await;
    assert_eq!(grant.status(), 400, "the password grant sees the same lock");
}

pub async fn consent_denied_goes_back_as_access_denied(backend: Backend) {
    let mut f = fixture(backend).await;
    let login = f.browser.get(&f.path("web", &[])).await;
    let consent = f.browser.sign_in(&login, "alice", PASSWORD).await;
    let back = f.browser.decide(&consent, false).await;
    assert_eq!(
        back.redirect_param("error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(back.redirect_param("state").as_deref(), Some(STATE));
    assert_eq!(back.redirect_param("iss").as_deref(), Some(ISSUER));
    assert!(back.redirect_param("code").is_none());
    assert_eq!(f.app.audit_rows("consent.denied").await.len(), 1);
}

crate::both_backends!(
    signs_in_consents_and_redeems_the_code,
    single_sign_on_and_prompt_values,
    a_first_party_client_is_not_asked_for_consent,
    a_public_client_redeems_with_pkce_alone,
    failed_sign_ins_are_throttled_and_audited,
    consent_denied_goes_back_as_access_denied,
);
