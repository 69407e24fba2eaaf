//! Client credentials grant (RFC 6749 §4.4): a confidential client acting for itself.

use serde_json::json;

use crate::store::{AuditEvent, ClientRecord};

use super::issue::{Subject, TokenResponse};
use super::{OAuth, OAuthError, scope};

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
        })
    }
}
