//! The UserInfo endpoint (OIDC Core §5.3): what the access token's scopes let its client know
//! about the user, read fresh from the store.

use serde_json::{Map, Value, json};

use crate::store::AccessCheck;

use super::{OAuth, OAuthError};

/// Why a bearer token was refused (RFC 6750 §3.1).
#[derive(Debug, thiserror::Error)]
pub enum BearerError {
    /// Missing, malformed, expired, revoked, or not a user's token: 401.
    #[error("invalid_token: {0}")]
    InvalidToken(&'static str),
    /// A user's token without the `openid` scope: 403.
    #[error("insufficient_scope: {0}")]
    InsufficientScope(&'static str),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
}

impl From<crate::store::StoreError> for BearerError {
    fn from(err: crate::store::StoreError) -> Self {
        Self::OAuth(err.into())
    }
}

impl OAuth {
    pub async fn userinfo(&self, token: Option<&str>) -> Result<Value, BearerError> {
        let token = token.ok_or(BearerError::InvalidToken(
            "a bearer access token is required",
        ))?;
        let now = self.clock.now();
        let keys = self.keys.verification_keys();
        let invalid = || BearerError::InvalidToken("the access token is not valid");
        let claims = self
            .verified
            .verify(&keys, token, &self.policy.issuer, now)
            .map_err(|_| invalid())?;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        // Only user tokens carry preferred_username.
        let (Some(jti), Some(user_id), Some(_)) =
            (text("jti"), text("sub"), text("preferred_username"))
        else {
            return Err(invalid());
        };
        let usable = self
            .store
            .access_token_usable(AccessCheck {
                jti,
                client_id: text("client_id").unwrap_or_default(),
                user_id: Some(user_id.clone()),
                family_id: text("sid"),
                iat: claims
                    .get("iat")
                    .and_then(Value::as_i64)
                    .unwrap_or(i64::MIN),
            })
            .await?;
        if !usable {
            return Err(invalid());
        }
        let scope = text("scope").unwrap_or_default();
        let has = |s: &str| scope.split_whitespace().any(|g| g == s);
        if !has("openid") {
            return Err(BearerError::InsufficientScope(
                "the access token was not granted the openid scope",
            ));
        }
        let user = match self.store.find_user_by_id(&user_id).await? {
            Some(user) if !user.disabled => user,
            _ => return Err(invalid()),
        };
        let mut out = Map::new();
        out.insert("sub".into(), json!(user.id));
        out.insert("preferred_username".into(), json!(user.username));
        if has("email")
            && let Some(email) = &user.profile.email
        {
            out.insert("email".into(), json!(email));
            out.insert("email_verified".into(), json!(user.profile.email_verified));
        }
        if has("profile")
            && let Some(name) = &user.profile.name
        {
            out.insert("name".into(), json!(name));
        }
        Ok(Value::Object(out))
    }
}
