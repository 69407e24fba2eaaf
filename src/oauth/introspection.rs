//! Token introspection (RFC 7662), for access and refresh tokens. Anything not valid right now
//! is `{"active": false}`, with no reason given.

use serde::Serialize;
use serde_json::Value;

use crate::crypto::tokens;
use crate::store::AccessCheck;

use super::{OAuth, OAuthError, Params};

/// RFC 7662 §2.2 response.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

impl Introspection {
    fn inactive() -> Self {
        Self::default()
    }
}

impl OAuth {
    pub async fn introspect(
        &self,
        params: &Params,
        auth: &super::ClientAuth,
    ) -> Result<Introspection, OAuthError> {
        let client = self.authenticate_client(auth).await?;
        // RFC 7662 §4: the caller must really authenticate, so a public client never may.
        if !client.introspect || client.is_public() {
            self.record(&[crate::store::AuditEvent::new(
                self.clock.now(),
                Self::actor(&client.client_id),
                "introspect.denied",
                &client.client_id,
            )
            .outcome("denied")
            .client(&client.client_id)])
                .await?;
            return Err(OAuthError::NotPermitted(
                "this client may not introspect tokens".into(),
            ));
        }
        let token = params.require("token")?;
        if token.starts_with(tokens::REFRESH_PREFIX) {
            self.introspect_refresh(token).await
        } else {
            self.introspect_access(token).await
        }
    }

    async fn introspect_access(&self, token: &str) -> Result<Introspection, OAuthError> {
        let now = self.clock.now();
        let keys = self.keys.verification_keys();
        let Ok(claims) = self.verified.verify(&keys, token, &self.policy.issuer, now) else {
            return Ok(Introspection::inactive());
        };
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let Some(jti) = text("jti") else {
            return Ok(Introspection::inactive());
        };
        // User tokens carry preferred_username; their subject must still exist and be enabled.
        let user_id = claims.get("preferred_username").and(text("sub"));
        if !self
            .store
            .access_token_usable(AccessCheck {
                jti: jti.clone(),
                client_id: text("client_id").unwrap_or_default(),
                user_id,
                family_id: text("sid"),
                iat: number("iat").unwrap_or(i64::MIN),
            })
            .await?
        {
            return Ok(Introspection::inactive());
        }
        Ok(Introspection {
            active: true,
            scope: text("scope"),
            client_id: text("client_id"),
            username: text("preferred_username"),
            token_type: Some("Bearer"),
            exp: number("exp"),
            iat: number("iat"),
            nbf: number("nbf"),
            sub: text("sub"),
            aud: claims.get("aud").cloned(),
            iss: text("iss"),
            jti: Some(jti),
        })
    }

    async fn introspect_refresh(&self, token: &str) -> Result<Introspection, OAuthError> {
        let now = self.clock.now();
        let Some(found) = self.store.find_refresh_token(&tokens::hash(token)).await? else {
            return Ok(Introspection::inactive());
        };
        let exp = found.idle_expires_at.min(found.family_expires_at);
        if found.rotated_at.is_some()
            || found.revoked_at.is_some()
            || found.user_disabled()
            || exp <= now
        {
            return Ok(Introspection::inactive());
        }
        Ok(Introspection {
            active: true,
            scope: Some(found.scope),
            client_id: Some(found.client_id),
            username: Some(found.username),
            token_type: Some("refresh_token"),
            exp: Some(exp),
            iat: Some(found.issued_at),
            sub: Some(found.user_id),
            iss: Some(self.policy.issuer.clone()),
            ..Introspection::default()
        })
    }
}
