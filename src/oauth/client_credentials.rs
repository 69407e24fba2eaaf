//! Client credentials grant (RFC 6749 §4.4): a confidential client acting for itself.

use serde_json::json;

use crate::store::{AuditEvent, ClientRecord};

use super::issue::{Subject, TokenResponse};
use super::{OAuth, OAuthError, scope};

/// A client_credentials token's `sub` is the client id, a user's is the user's UUID: a
/// UUID-shaped client id could name a user to a resource server (RFC 9068 §5, RFC 9700 §4.15).
/// Registration refuses such ids; one an older database holds gets no token either.
pub fn looks_like_a_user_id(client_id: &str) -> bool {
    uuid::Uuid::try_parse(client_id).is_ok()
}

impl OAuth {
    pub(super) async fn client_credentials_grant(
        &self,
        client: &ClientRecord,
        params: &super::Params,
    ) -> Result<TokenResponse, OAuthError> {
        if client.is_public() {
            return Err(OAuthError::UnauthorizedClient(
                "public clients may not use client_credentials".into(),
            ));
        }
        if looks_like_a_user_id(&client.client_id) {
            return Err(OAuthError::UnauthorizedClient(
                "this client's id looks like a user id, so its tokens could name a user".into(),
            ));
        }
        let granted = scope::grant(params.get("scope"), &client.scopes)?;
        let (access_token, expires_in) =
            self.sign_access_token(client, Subject::Client, &granted)?;
        self.record(&[AuditEvent::new(
            self.clock.now(),
            Self::actor(&client.client_id),
            "token.issued",
            &client.client_id,
        )
        .client(&client.client_id)
        .details(json!({ "grant": "client_credentials", "scope": granted.join(" ") }))])
            .await?;
        Self::count_issued("client_credentials", client);
        // RFC 6749 §4.4.3: no refresh token for this grant.
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: None,
            scope: granted.join(" "),
            id_token: None,
        })
    }
}
