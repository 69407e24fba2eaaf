//! The OAuth 2.0 domain: grants, client authentication, scopes, token issuance, revocation and
//! introspection. Neither actix nor SQL appears here: requests arrive as [`Params`] and
//! [`ClientAuth`], state goes through [`Store`].

mod audit_limit;
pub mod authorize;
mod client_auth;
pub mod client_credentials;
mod code_grant;
mod error;
mod id_token;
mod introspection;
mod issue;
mod login_gate;
mod logout;
mod password_grant;
mod readiness;
pub mod redirect_uri;
mod refresh_grant;
mod refresh_rules;
mod revocation;
pub mod scope;
mod throttle;
mod userinfo;
pub mod usernames;

use std::sync::Arc;

pub use client_auth::{ClientAuth, authenticate};
pub use error::OAuthError;
pub use introspection::Introspection;
pub use issue::{Subject, TokenResponse};
pub use logout::{Logout, LogoutRequest};
pub use readiness::NotReady;
pub use userinfo::BearerError;

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::password::Hasher;
use crate::keys::KeyRing;
use crate::store::{AuditEvent, Store};

/// Grant types Tessera implements (RFC 6749 §4.3, §4.4, §6).
pub const GRANT_TYPES: [&str; 4] = [
    "authorization_code",
    "password",
    "refresh_token",
    "client_credentials",
];

/// Token policy from settings, in the units the domain uses (seconds).
#[derive(Debug, Clone)]
pub struct Policy {
    pub issuer: String,
    pub access_ttl: i64,
    pub refresh_idle_ttl: i64,
    pub refresh_absolute_ttl: i64,
    pub refresh_reuse_grace: i64,
    pub refresh_reuse_detection: i64,
    pub default_audience: String,
    pub roles_claim: String,
    pub password_max_length: usize,
    pub max_failures: u32,
    pub max_backoff: i64,
    pub session_idle_ttl: i64,
    pub session_absolute_ttl: i64,
}

impl Policy {
    pub fn from_settings(s: &Settings) -> Self {
        let secs = |d: std::time::Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        Self {
            issuer: s.issuer_base().to_owned(),
            access_ttl: secs(s.tokens.access_ttl),
            refresh_idle_ttl: secs(s.tokens.refresh_idle_ttl),
            refresh_absolute_ttl: secs(s.tokens.refresh_absolute_ttl),
            refresh_reuse_grace: secs(s.tokens.refresh_reuse_grace),
            refresh_reuse_detection: secs(s.tokens.reuse_detection()),
            default_audience: s.tokens.default_audience.clone(),
            roles_claim: s.tokens.roles_claim.clone(),
            password_max_length: s.passwords.max_length,
            max_failures: s.security.max_failures,
            max_backoff: secs(s.security.max_backoff),
            session_idle_ttl: secs(s.login.session_idle_ttl),
            session_absolute_ttl: secs(s.login.session_absolute_ttl),
        }
    }
}

/// Form parameters of one request, each name at most once (the HTTP layer enforces that).
#[derive(Default, Clone)]
pub struct Params(Vec<(String, String)>);

/// Names only: values include passwords, secrets and tokens.
impl std::fmt::Debug for Params {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Params {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// Every parameter, in the order sent.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present and non-empty.
    pub fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        match self.get(name) {
            Some(v) if !v.is_empty() => Ok(v),
            _ => Err(OAuthError::invalid_request(format!(
                "missing parameter: {name}"
            ))),
        }
    }
}

/// Everything the OAuth endpoints need, shared by every worker.
#[derive(Clone)]
pub struct OAuth {
    pub store: Store,
    pub hasher: Hasher,
    pub keys: Arc<KeyRing>,
    pub clock: Arc<dyn Clock>,
    pub policy: Arc<Policy>,
    /// Batched writer for events that accompany no state change.
    pub audit: crate::store::AuditWriter,
    /// Folds floods of events that unauthenticated callers can trigger.
    pub audit_limit: Arc<audit_limit::AuditLimiter>,
    /// Password checks in flight per account on this instance.
    pub login_gate: Arc<login_gate::LoginGate>,
    /// Access tokens introspection has verified the signature of.
    pub verified: Arc<crate::crypto::verified::VerifiedTokens>,
}

pub use audit_limit::AuditLimiter;

impl OAuth {
    /// The token endpoint (RFC 6749 §3.2): dispatches on `grant_type`.
    pub async fn token(
        &self,
        params: &Params,
        auth: &ClientAuth,
    ) -> Result<TokenResponse, OAuthError> {
        let grant_type = params.require("grant_type")?;
        if !GRANT_TYPES.contains(&grant_type) {
            return Err(OAuthError::UnsupportedGrantType(
                "grant_type must be authorization_code, password, refresh_token or client_credentials"
                    .into(),
            ));
        }
        let client = self.authenticate_client(auth).await?;
        if !client.allows_grant(grant_type) {
            if grant_type == "refresh_token" {
                // Not allowed to refresh at all, yet holding another client's refresh token:
                // as much a theft as from a client that may refresh.
                self.detect_stolen_refresh_token(&client, params).await?;
            }
            return Err(OAuthError::UnauthorizedClient(
                format!("this client may not use the {grant_type} grant").into(),
            ));
        }
        match grant_type {
            "authorization_code" => self.authorization_code_grant(&client, params).await,
            "password" => self.password_grant(&client, params).await,
            "refresh_token" => self.refresh_grant(&client, params).await,
            "client_credentials" => self.client_credentials_grant(&client, params).await,
            // A name in GRANT_TYPES without a handler here is a grant not built yet.
            other => Err(OAuthError::UnsupportedGrantType(
                format!("the {other} grant is not supported").into(),
            )),
        }
    }

    /// Authenticates the client; a failure is audited (with the id it claimed, cleaned).
    pub async fn authenticate_client(
        &self,
        auth: &ClientAuth,
    ) -> Result<crate::store::ClientRecord, OAuthError> {
        match authenticate(&self.store, auth).await {
            Err(OAuthError::InvalidClient(reason)) if matches!(auth, ClientAuth::Missing) => {
                Err(OAuthError::InvalidClient(reason))
            }
            Err(OAuthError::InvalidClient(reason)) => {
                let claimed: String = auth
                    .client_id()
                    .unwrap_or("")
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(128)
                    .collect();
                metrics::counter!("tessera_client_auth_failures_total").increment(1);
                let Some(folded) = self
                    .audit_limit
                    .admit(&format!("client:{claimed}"), self.clock.now())
                else {
                    return Err(OAuthError::InvalidClient(reason));
                };
                self.record(&[AuditEvent::new(
                    self.clock.now(),
                    format!("client:{claimed}"),
                    "client_auth.failure",
                    &claimed,
                )
                .outcome("failure")
                .client(&claimed)
                .details(serde_json::json!({ "method": auth.method(), "folded": folded }))])
                    .await?;
                Err(OAuthError::InvalidClient(reason))
            }
            other => other,
        }
    }

    /// Records events that accompany no state change through the shared writer. With
    /// `audit.on_overload = "wait"` it returns once they have committed, and an error (the
    /// request must fail) when they cannot be written.
    async fn record(&self, events: &[AuditEvent]) -> Result<(), OAuthError> {
        Ok(self.audit.write(events).await?)
    }

    fn actor(client_id: &str) -> String {
        format!("client:{client_id}")
    }
}
