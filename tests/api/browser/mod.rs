//! Signing in through Tessera's own pages, the way a browser without JavaScript does it:
//! the authorization endpoint, the sign-in and consent forms, the code exchange, ID tokens,
//! userinfo, sessions, consent and logout, with every error branch.

mod agent;
mod authorize_errors;
mod code_exchange;
mod flow;
mod session_bounds;
mod sessions;

use serde_json::Value;
use tessera::admin::{ClientSpec, ProfileUpdate};

use crate::helpers::{Backend, Client, PASSWORD, TestApp, spawn_app};
use agent::{Browser, CHALLENGE, Page, VERIFIER, authorize_path};

pub const REDIRECT: &str = "https://app.example.com/callback";
pub const STATE: &str = "st-123";
pub const NONCE: &str = "n-456";

/// A server with alice (email and name set), a confidential web app that asks consent, and a
/// browser.
pub struct Fixture {
    pub app: TestApp,
    pub web: Client,
    /// The seed's password-grant client.
    pub gateway: Client,
    pub browser: Browser,
}

pub async fn fixture(backend: Backend) -> Fixture {
    let app = spawn_app(backend).await;
    let gateway = app.seed().await;
    app.admin
        .update_profile(
            "alice",
            ProfileUpdate {
                email: Some(Some("alice@example.com".into())),
                email_verified: Some(true),
                name: Some(Some("Alice Example".into())),
            },
        )
        .await
        .expect("profile");
    let web = add_web_client(&app, "web", false).await;
    let browser = Browser::new(&app.address);
    Fixture {
        app,
        web,
        gateway,
        browser,
    }
}

pub async fn add_web_client(app: &TestApp, id: &str, first_party: bool) -> Client {
    let (_, secret) = app
        .admin
        .add_client(ClientSpec {
            client_id: id.into(),
            name: format!("The {id} app"),
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scopes: ["openid", "profile", "email", "offline_access", "read"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            redirect_uris: vec![REDIRECT.into()],
            post_logout_redirect_uris: vec!["https://app.example.com/bye".into()],
            first_party,
            ..ClientSpec::default()
        })
        .await
        .expect("client");
    Client {
        id: id.into(),
        secret: secret.expect("confidential"),
    }
}

impl Fixture {
    /// The usual request of `client`, with `extra` pairs added (or replacing a default one).
    pub fn path(&self, client: &str, extra: &[(&str, &str)]) -> String {
        let defaults = [
            ("client_id", client),
            ("response_type", "code"),
            ("redirect_uri", REDIRECT),
            ("scope", "openid profile email"),
            ("state", STATE),
            ("nonce", NONCE),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        let mut pairs: Vec<(&str, &str)> = defaults
            .iter()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .copied()
            .collect();
        pairs.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
        authorize_path(&pairs)
    }

    /// Signs alice in to the web app (unless the browser is signed in) and allows it (unless
    /// allowed before): the redirect carrying the code.
    pub async fn sign_in_and_allow(&mut self, extra: &[(&str, &str)]) -> Page {
        let path = self.path("web", extra);
        let mut page = self.browser.get(&path).await;
        if page.is_login_page() {
            page = self.browser.sign_in(&page, "alice", PASSWORD).await;
        }
        if page.is_consent_page() {
            page = self.browser.decide(&page, true).await;
        }
        assert_eq!(page.status, 303, "{}", page.body);
        page
    }

    /// A code for alice and the web app.
    pub async fn code(&mut self) -> String {
        let back = self.sign_in_and_allow(&[]).await;
        back.redirect_param("code").expect("code")
    }

    /// Redeems a code as `client` with `verifier` and the usual redirect URI.
    pub async fn exchange(&self, client: &Client, code: &str, verifier: &str) -> (u16, Value) {
        let response = self
            .app
            .token(
                Some(client),
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", verifier),
                ],
            )
            .await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("json"))
    }

    pub async fn redeem(&self, code: &str) -> Value {
        let (status, body) = self.exchange(&self.web, code, VERIFIER).await;
        assert_eq!(status, 200, "{body}");
        body
    }
}
