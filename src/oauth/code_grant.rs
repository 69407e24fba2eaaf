//! The authorization code grant at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6): a code
//! is redeemed once, by the client it was issued to, with the redirect URI and the PKCE
//! verifier of its request, while its login session lives. A second use revokes what the first
//! issued (RFC 6749 §4.1.2).

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::crypto::tokens;
use crate::store::{AuditEvent, ClientRecord, CodeRecord, NewFamily, Redeemed, Redemption};

use super::id_token::IdTokenFacts;
use super::issue::{Subject, TokenResponse};
use super::{OAuth, OAuthError, Params};

const BAD_CODE: &str = "the authorization code is invalid, expired or already used";

impl OAuth {
    pub(super) async fn authorization_code_grant(
        &self,
        client: &ClientRecord,
        params: &Params,
    ) -> Result<TokenResponse, OAuthError> {
        let code = params.require("code")?;
        let now = self.clock.now();
        let code_hash = tokens::hash(code);
        let Some(record) = self.store.find_code(&code_hash).await? else {
            return Err(OAuthError::invalid_grant(BAD_CODE));
        };
        if record.redeemed_at.is_some() {
            return Err(self.replayed(client, &code_hash, &record).await);
        }
        self.check_code(client, params, &record, now)?;
        let user = match self.store.find_user_by_id(&record.user_id).await? {
            Some(user) if !user.disabled => user,
            _ => return Err(OAuthError::invalid_grant(BAD_CODE)),
        };
        let scope: Vec<String> = record.scope.split_whitespace().map(str::to_owned).collect();
        // Without offline_access, refresh tokens end with the login session: when it is ended
        // (logout, `tessera session revoke`), and at its absolute expiry at the latest.
        let offline = scope.iter().any(|s| s == "offline_access");
        let refresh = client.allows_grant("refresh_token").then(|| {
            let token = tokens::generate(tokens::REFRESH_PREFIX);
            let mut expires_at = now.saturating_add(self.policy.refresh_absolute_ttl);
            if !offline {
                expires_at = expires_at.min(record.session_expires_at.unwrap_or(now));
            }
            let family = NewFamily {
                id: uuid::Uuid::new_v4().to_string(),
                user_id: user.id.clone(),
                client_id: client.client_id.clone(),
                scope: record.scope.clone(),
                created_at: now,
                expires_at,
                token_hash: tokens::hash(&token),
                idle_expires_at: now
                    .saturating_add(self.policy.refresh_idle_ttl)
                    .min(expires_at),
                verified_password_hash: user.password_hash.clone(),
                // Offline access outlives the session: such a family names none.
                session_id: (!offline).then(|| record.session_id.clone()),
            };
            (token, family)
        });
        let jti = tokens::random_id();
        let (access_token, expires_in) = self.sign_access_token_as(
            client,
            Subject::User {
                user: &user,
                family: refresh.as_ref().map(|(_, f)| f.id.as_str()),
            },
            &scope,
            &jti,
        )?;
        let actor = Self::actor(&client.client_id);
        let mut events = vec![
            AuditEvent::new(now, actor.clone(), "code.redeemed", &user.username)
                .user(&user.username)
                .client(&client.client_id)
                .details(json!({ "session": record.session_id, "scope": record.scope })),
        ];
        if let Some((_, family)) = &refresh {
            events.push(
                AuditEvent::new(now, actor, "token.issued", &family.id)
                    .user(&user.username)
                    .client(&client.client_id)
                    .details(json!({ "grant": "authorization_code", "refresh_family": family.id })),
            );
        }
        let redeemed = self
            .store
            .redeem_code(
                &Redemption {
                    code_hash: &code_hash,
                    now,
                    access_jti: &jti,
                    access_expires_at: now.saturating_add(expires_in),
                    family: refresh.as_ref().map(|(_, f)| f),
                    session_id: &record.session_id,
                },
                &events,
            )
            .await?;
        match redeemed {
            Redeemed::Issued => {}
            // Another request redeemed it a moment ago: as much a second use as a later one.
            Redeemed::NotRedeemable => {
                return Err(self.replayed(client, &code_hash, &record).await);
            }
            Redeemed::UserChanged => return Err(OAuthError::invalid_grant(BAD_CODE)),
            Redeemed::SessionEnded => {
                return Err(OAuthError::invalid_grant("the login session has ended"));
            }
        }
        let id_token = if scope.iter().any(|s| s == "openid") {
            Some(self.sign_id_token(
                client,
                &user,
                &IdTokenFacts {
                    session_id: &record.session_id,
                    auth_time: record.auth_time,
                    nonce: record.nonce.as_deref(),
                    access_token: &access_token,
                },
            )?)
        } else {
            None
        };
        Self::count_issued("authorization_code", client);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: refresh.map(|(token, _)| token),
            scope: record.scope,
            id_token,
        })
    }

    /// Everything a code is bound to, short of the single use.
    fn check_code(
        &self,
        client: &ClientRecord,
        params: &Params,
        record: &CodeRecord,
        now: i64,
    ) -> Result<(), OAuthError> {
        if record.client_id != client.client_id || record.expires_at <= now {
            return Err(OAuthError::invalid_grant(BAD_CODE));
        }
        let presented = params.get("redirect_uri");
        match (&record.redirect_uri, presented) {
            (Some(bound), Some(given)) if bound == given => {}
            (None, None) => {}
            (None, Some(given)) if client.redirect_uris.iter().any(|r| r == given) => {}
            _ => {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri does not match the authorization request",
                ));
            }
        }
        let verifier = params.get("code_verifier").unwrap_or("");
        if !pkce_matches(verifier, &record.code_challenge) {
            metrics::counter!("tessera_code_refused_total", "reason" => "pkce").increment(1);
            return Err(OAuthError::invalid_grant("PKCE verification failed"));
        }
        Ok(())
    }

    /// A code presented again: whatever it issued is revoked, and the caller hears only that
    /// the code is not valid.
    async fn replayed(
        &self,
        client: &ClientRecord,
        code_hash: &[u8],
        record: &CodeRecord,
    ) -> OAuthError {
        let now = self.clock.now();
        metrics::counter!("tessera_code_refused_total", "reason" => "replay").increment(1);
        let event = AuditEvent::new(
            now,
            Self::actor(&client.client_id),
            "code.replayed",
            &record.user_id,
        )
        .outcome("denied")
        .client(&client.client_id)
        .details(json!({ "session": record.session_id, "issued_to": record.client_id }));
        match self
            .store
            .revoke_code_grants(code_hash, now, std::slice::from_ref(&event))
            .await
        {
            Ok(_) => OAuthError::invalid_grant(BAD_CODE),
            Err(e) => e.into(),
        }
    }
}

/// RFC 7636 §4.6 with S256: BASE64URL(SHA-256(verifier)) equals the challenge. The verifier
/// must be 43 to 128 unreserved characters (§4.1).
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()));
    well_formed && bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::pkce_matches;

    #[test]
    fn rfc7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(&verifier.replace('d', "e"), challenge));
        assert!(!pkce_matches(challenge, challenge));
        assert!(!pkce_matches("short", challenge));
    }
}
