//! Building and signing access tokens (RFC 9068 §2.2) and the token response (RFC 6749 §5.1).

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::crypto::tokens;
use crate::store::{ClientRecord, UserRecord};

use super::{OAuth, OAuthError};

/// The successful token response.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
    /// OpenID Connect: with the `openid` scope, from the authorization code grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Who a token is about: a user (with the refresh family it belongs to, if any), or the
/// client itself (client_credentials).
pub enum Subject<'a> {
    User {
        user: &'a UserRecord,
        family: Option<&'a str>,
    },
    Client,
}

impl OAuth {
    /// The access-token lifetime for a client, in seconds.
    pub fn access_ttl(&self, client: &ClientRecord) -> i64 {
        client.access_ttl.unwrap_or(self.policy.access_ttl)
    }

    /// Counts an issued token for the metrics.
    pub(super) fn count_issued(grant: &'static str, client: &ClientRecord) {
        metrics::counter!("tessera_tokens_issued_total", "grant" => grant, "client" => client.client_id.clone()).increment(1);
    }

    /// Signs an access token with the active key; returns it with its lifetime.
    pub fn sign_access_token(
        &self,
        client: &ClientRecord,
        subject: Subject<'_>,
        scope: &[String],
    ) -> Result<(String, i64), OAuthError> {
        self.sign_access_token_as(client, subject, scope, &tokens::random_id())
    }

    /// [`Self::sign_access_token`] with the `jti` given, for a token that may have to be
    /// denylisted later by that id.
    pub(super) fn sign_access_token_as(
        &self,
        client: &ClientRecord,
        subject: Subject<'_>,
        scope: &[String],
        jti: &str,
    ) -> Result<(String, i64), OAuthError> {
        let now = self.clock.now();
        let ttl = self.access_ttl(client);
        let audience: Value = match client.audiences.as_slice() {
            [] => json!(self.policy.default_audience),
            [one] => json!(one),
            many => json!(many),
        };
        let mut claims = Map::with_capacity(12);
        claims.insert("iss".into(), json!(self.policy.issuer));
        match subject {
            Subject::User { user, family } => {
                claims.insert("sub".into(), json!(user.id));
                claims.insert("preferred_username".into(), json!(user.username));
                claims.insert(self.policy.roles_claim.clone(), json!(user.roles));
                // Revoking the family then makes introspection refuse this token too
                // (RFC 7009 §2.1).
                if let Some(family) = family {
                    claims.insert("sid".into(), json!(family));
                }
            }
            Subject::Client => {
                claims.insert("sub".into(), json!(client.client_id));
            }
        }
        claims.insert("aud".into(), audience);
        claims.insert("exp".into(), json!(now + ttl));
        claims.insert("iat".into(), json!(now));
        claims.insert("nbf".into(), json!(now));
        claims.insert("jti".into(), json!(jti));
        claims.insert("client_id".into(), json!(client.client_id));
        claims.insert("scope".into(), json!(scope.join(" ")));
        let signer = self
            .keys
            .active_signer(now)
            .ok_or_else(|| OAuthError::TemporarilyUnavailable("no signing key is active".into()))?;
        Ok((signer.sign(&Value::Object(claims))?, ttl))
    }
}
