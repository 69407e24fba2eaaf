//! Token revocation (RFC 7009). A client can revoke only its own tokens; anything else, and
//! anything unknown, is answered the same way (200) so the endpoint reveals nothing.

use serde_json::json;

use crate::crypto::tokens;
use crate::store::{AuditEvent, ClientRecord};

use super::{OAuth, OAuthError, Params};

impl OAuth {
    pub async fn revoke(
        &self,
        params: &Params,
        auth: &super::ClientAuth,
    ) -> Result<(), OAuthError> {
        let client = self.authenticate_client(auth).await?;
        let token = params.require("token")?;
        // The hint is not trusted (RFC 7009 §2.1): the token's own shape tells its kind, since
        // refresh tokens carry a prefix that no JWT can start with.
        if token.starts_with(tokens::REFRESH_PREFIX) {
            self.revoke_refresh(&client, token).await
        } else {
            self.revoke_access(&client, token).await
        }
    }

    async fn revoke_refresh(&self, client: &ClientRecord, token: &str) -> Result<(), OAuthError> {
        let Some(found) = self.store.find_refresh_token(&tokens::hash(token)).await? else {
            return Ok(());
        };
        if found.client_id != client.client_id {
            return Ok(());
        }
        let now = self.clock.now();
        let event = AuditEvent::new(
            now,
            Self::actor(&client.client_id),
            "refresh.family_revoked",
            &found.family_id,
        )
        .user(&found.username)
        .client(&client.client_id)
        .details(json!({ "reason": "revoked_by_client" }));
        self.store
            .revoke_family(
                &found.family_id,
                now,
                "revoked_by_client",
                std::slice::from_ref(&event),
            )
            .await?;
        Ok(())
    }

    async fn revoke_access(&self, client: &ClientRecord, token: &str) -> Result<(), OAuthError> {
        let now = self.clock.now();
        let Ok(claims) = self
            .keys
            .verification_keys()
            .verify(token, &self.policy.issuer, now)
        else {
            return Ok(());
        };
        let (Some(jti), Some(exp), Some(owner)) = (
            claims.get("jti").and_then(|v| v.as_str()),
            claims.get("exp").and_then(|v| v.as_i64()),
            claims.get("client_id").and_then(|v| v.as_str()),
        ) else {
            return Ok(());
        };
        if owner != client.client_id {
            return Ok(());
        }
        let event = AuditEvent::new(
            now,
            Self::actor(&client.client_id),
            "access_token.revoked",
            jti,
        )
        .client(&client.client_id)
        .details(json!({ "exp": exp }))
        .user_if_known(
            claims
                .get("preferred_username")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
        );
        self.store.deny_access_token(jti, exp, &event).await?;
        metrics::counter!("tessera_revocations_total", "kind" => "access_token").increment(1);
        Ok(())
    }
}
