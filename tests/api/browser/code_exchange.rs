//! The code at the token endpoint: single use, bound to its request; what userinfo and
//! discovery say.

use serde_json::Value;

use super::agent::VERIFIER;
use super::fixture;
use crate::helpers::{Backend, ISSUER, access_token_of, refresh_token_of};

pub async fn a_second_use_revokes_what_the_code_issued(backend: Backend) {
    let mut f = fixture(backend).await;
    let code = f.code().await;
    let first = f.redeem(&code).await;
    let (status, body) = f.exchange(&f.web, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // RFC 6749 §4.1.2: what the first use issued is revoked.
    let refreshed = f.app.refresh(&f.web, &refresh_token_of(&first)).await;
    assert_eq!(
        refreshed.status(),
        400,
        "the refresh token from the code is revoked"
    );
    let info = f
        .app
        .http
        .get(f.app.url("/userinfo"))
        .bearer_auth(access_token_of(&first))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(
        info.status(),
        401,
        "the access token from the code is refused"
    );
    let replays = f.app.audit_rows("code.replayed").await;
    assert_eq!(replays.len(), 1);
    assert_eq!(replays[0].outcome, "denied");
    // Two at once: exactly one wins.
    let code = f.code().await;
    let (a, b) = tokio::join!(
        f.exchange(&f.web, &code, VERIFIER),
        f.exchange(&f.web, &code, VERIFIER)
    );
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{a:?} {b:?}");
}

pub async fn the_code_is_bound_to_its_request(backend: Backend) {
    let mut f = fixture(backend).await;
    let other = super::add_web_client(&f.app, "other", false).await;
    let code = f.code().await;
    let refused = |(status, body): (u16, Value)| {
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("invalid_grant")),
            "{body}"
        );
    };
    refused(f.exchange(&other, &code, VERIFIER).await);
    refused(
        f.exchange(&f.web, &code, "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX")
            .await,
    );
    refused(f.exchange(&f.web, &code, "short").await);
    let response = f
        .app
        .token(
            Some(&f.web),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "https://app.example.com/other"),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
    let response = f
        .app
        .token(
            Some(&f.web),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(
        response.status(),
        400,
        "the redirect URI the request named is required"
    );
    // None of those spent it: the right request still works.
    f.redeem(&code).await;

    // At most 60 s.
    let late = f.code().await;
    f.app.clock.advance(61);
    refused(f.exchange(&f.web, &late, VERIFIER).await);

    // Bound to the session: ended before the exchange, the code is refused.
    let code = f.code().await;
    let alice = f.app.admin.login_sessions("alice").await.expect("sessions");
    for s in &alice {
        f.app
            .admin
            .end_login_sessions(Some(&s.id), None)
            .await
            .expect("end");
    }
    refused(f.exchange(&f.web, &code, VERIFIER).await);
    refused(f.exchange(&f.web, "tsa_not-a-code", VERIFIER).await);
    refused(f.exchange(&f.web, "x' OR '1'='1", VERIFIER).await);
}

pub async fn userinfo_answers_only_openid_user_tokens(backend: Backend) {
    let mut f = fixture(backend).await;
    let tokens = {
        let code = f.code().await;
        f.redeem(&code).await
    };
    let get = |token: Option<String>| {
        let mut req = f.app.http.get(f.app.url("/userinfo"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move { req.send().await.expect("userinfo") }
    };
    let none = get(None).await;
    assert_eq!(none.status(), 401);
    assert!(
        none.headers()["www-authenticate"]
            .to_str()
            .is_ok_and(|v| v.starts_with("Bearer") && v.contains("invalid_token"))
    );
    let id_token = tokens["id_token"].as_str().map(str::to_owned);
    assert_eq!(
        get(id_token).await.status(),
        401,
        "an ID token is not an access token"
    );
    assert_eq!(get(Some("garbage".into())).await.status(), 401);
    // A user token without openid: insufficient_scope.
    let password = f
        .app
        .token(
            Some(&f.gateway),
            &[
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", crate::helpers::PASSWORD),
                ("scope", "read"),
            ],
        )
        .await
        .json::<Value>()
        .await
        .expect("json");
    let narrow = get(Some(access_token_of(&password))).await;
    assert_eq!(narrow.status(), 403);
    assert!(
        narrow.headers()["www-authenticate"]
            .to_str()
            .is_ok_and(|v| v.contains("insufficient_scope"))
    );
    // POST works the same; a disabled user's token is refused.
    let post = f
        .app
        .http
        .post(f.app.url("/userinfo"))
        .bearer_auth(access_token_of(&tokens))
        .send()
        .await
        .expect("post");
    assert_eq!(post.status(), 200);
    assert_eq!(post.headers()["cache-control"], "no-store");
    f.app
        .admin
        .set_disabled("alice", true)
        .await
        .expect("disable");
    assert_eq!(get(Some(access_token_of(&tokens))).await.status(), 401);
}

pub async fn discovery_describes_the_flow(backend: Backend) {
    let f = fixture(backend).await;
    let get = |path: &'static str| {
        let req = f.app.http.get(f.app.url(path));
        async move {
            req.send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let oidc = get("/.well-known/openid-configuration").await;
    let oauth = get("/.well-known/oauth-authorization-server").await;
    assert_eq!(oidc, oauth, "one document");
    assert_eq!(oidc["issuer"], ISSUER);
    assert_eq!(
        oidc["authorization_endpoint"],
        format!("{ISSUER}/oauth/authorize")
    );
    assert_eq!(oidc["userinfo_endpoint"], format!("{ISSUER}/userinfo"));
    assert_eq!(
        oidc["end_session_endpoint"],
        format!("{ISSUER}/oauth/logout")
    );
    assert_eq!(
        oidc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        oidc["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(oidc["authorization_response_iss_parameter_supported"], true);
    assert!(
        oidc["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.contains(&"authorization_code".into()))
    );
    assert_eq!(
        oidc["id_token_signing_alg_values_supported"],
        serde_json::json!(["ES256"])
    );
    for scope in ["openid", "profile", "email", "offline_access"] {
        assert!(
            oidc["scopes_supported"]
                .as_array()
                .is_some_and(|s| s.contains(&scope.into())),
            "{scope}"
        );
    }
}

crate::both_backends!(
    a_second_use_revokes_what_the_code_issued,
    the_code_is_bound_to_its_request,
    userinfo_answers_only_openid_user_tokens,
    discovery_describes_the_flow,
);
