//! OpenID Connect ID tokens (OIDC Core §2, §3.1.3.6), signed with the active key.

use serde_json::{Map, Value, json};

use crate::store::{ClientRecord, UserRecord};

use super::{OAuth, OAuthError};

/// What an ID token states beyond the user and the client.
pub(super) struct IdTokenFacts<'a> {
    /// The login session (`sid`), as RP-initiated logout names it.
    pub session_id: &'a str,
    pub auth_time: i64,
    pub nonce: Option<&'a str>,
    /// The access token issued with it, for `at_hash`.
    pub access_token: &'a str,
}

impl OAuth {
    pub(super) fn sign_id_token(
        &self,
        client: &ClientRecord,
        user: &UserRecord,
        facts: &IdTokenFacts<'_>,
    ) -> Result<String, OAuthError> {
        let now = self.clock.now();
        let signer = self
            .keys
            .active_signer(now)
            .ok_or_else(|| OAuthError::TemporarilyUnavailable("no signing key is active".into()))?;
        let mut claims = Map::with_capacity(12);
        claims.insert("iss".into(), json!(self.policy.issuer));
        claims.insert("sub".into(), json!(user.id));
        claims.insert("aud".into(), json!(client.client_id));
        claims.insert("azp".into(), json!(client.client_id));
        claims.insert("exp".into(), json!(now + self.access_ttl(client)));
        claims.insert("iat".into(), json!(now));
        claims.insert("auth_time".into(), json!(facts.auth_time));
        if let Some(nonce) = facts.nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        claims.insert("sid".into(), json!(facts.session_id));
        claims.insert(
            "at_hash".into(),
            json!(signer.left_half_hash(facts.access_token)),
        );
        // A password, checked by Tessera itself (RFC 8176).
        claims.insert("amr".into(), json!(["pwd"]));
        Ok(signer.sign_id_token(&Value::Object(claims))?)
    }
}
