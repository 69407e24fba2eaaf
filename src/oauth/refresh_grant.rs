//! Refresh token grant (RFC 6749 §6) with rotation and reuse detection (RFC 9700 §4.14.2).

use serde_json::json;

use crate::crypto::tokens;
use std::sync::Arc;

use crate::store::{AuditEvent, ClientRecord, Narrowing, Rotation, RotationRequest, StoreError};

use super::issue::{Subject, TokenResponse};
use super::refresh_rules::{self, Refusal};
use super::{OAuth, OAuthError, scope};

const INVALID: &str = "the refresh token is invalid, expired or revoked";

impl OAuth {
    pub(super) async fn refresh_grant(
        &self,
        client: &ClientRecord,
        params: &super::Params,
    ) -> Result<TokenResponse, OAuthError> {
        let presented = params.require("refresh_token")?;
        let requested = params
            .get("scope")
            .map(scope::parse)
            .transpose()?
            .filter(|s| !s.is_empty());
        let now = self.clock.now();
        let actor = Self::actor(&client.client_id);
        if !presented.starts_with(tokens::REFRESH_PREFIX) || presented.len() > 128 {
            return Err(OAuthError::invalid_grant(INVALID));
        }

        let new_token = tokens::generate(tokens::REFRESH_PREFIX);
        let outcome = self
            .store
            .rotate_refresh_token(RotationRequest {
                presented_hash: tokens::hash(presented),
                client_id: client.client_id.clone(),
                now,
                new_hash: tokens::hash(&new_token),
                new_idle_expires_at: now.saturating_add(self.policy.refresh_idle_ttl),
                forget_rotated_at: now.saturating_add(self.policy.refresh_reuse_detection),
                narrowing: requested.clone().map(|wanted| {
                    Arc::new(move |granted: &str| scope::within(&wanted, granted)) as Narrowing
                }),
                success_event: AuditEvent::new(now, actor.clone(), "token.refresh", "")
                    .client(&client.client_id)
                    .details(json!({ "grant": "refresh_token" })),
            })
            .await?;
        let (family, user) = match outcome {
            Rotation::Rotated { family, user } => (family, user),
            Rotation::ScopeNotGranted => {
                self.record(&[AuditEvent::new(now, actor, "refresh.scope_denied", "")
                    .outcome("denied")
                    .client(&client.client_id)
                    .details(json!({ "requested": requested.map(|r| r.join(" ")) }))])
                    .await?;
                return Err(OAuthError::InvalidScope(
                    "scope exceeds what was originally granted".into(),
                ));
            }
            Rotation::NotClaimed(found) => {
                let cutoff = refresh_rules::grace_cutoff(now, self.policy.refresh_reuse_grace);
                let refusal = refresh_rules::judge(found, &client.client_id, cutoff);
                self.refuse(client, refusal, now).await?;
                return Err(OAuthError::invalid_grant(INVALID));
            }
        };

        // The refresh token keeps the family's scope (RFC 6749 §6); the access token gets the
        // narrowed one, and never more than the client may use today.
        let family_scope = scope::parse(&family.scope)?;
        let granted: Vec<String> = requested
            .unwrap_or(family_scope)
            .into_iter()
            .filter(|s| client.scopes.contains(s))
            .collect();
        let (access_token, expires_in) = self.sign_access_token(
            client,
            Subject::User {
                user: &user,
                family: Some(&family.id),
            },
            &granted,
        )?;
        Self::count_issued("refresh_token", client);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token: Some(new_token),
            scope: granted.join(" "),
            id_token: None,
        })
    }

    /// Carries out a refusal: revokes the family where the rules say so, audits the attempt.
    async fn refuse(
        &self,
        client: &ClientRecord,
        refusal: Refusal,
        now: i64,
    ) -> Result<(), OAuthError> {
        let actor = Self::actor(&client.client_id);
        let (reason, username) = match refusal {
            Refusal::WrongClient {
                username,
                family_id,
                owner_client,
            } => {
                return self
                    .revoke_stolen_family(client, username, family_id, owner_client, now)
                    .await;
            }
            Refusal::Reused {
                username,
                family_id,
            } => {
                let reuse =
                    AuditEvent::new(now, actor.clone(), "refresh.reuse_detected", &family_id)
                        .outcome("denied")
                        .user(&username)
                        .client(&client.client_id);
                let mut revoked = reuse.clone();
                revoked.action = "refresh.family_revoked";
                revoked.details = json!({ "reason": "reuse_detected" });
                // Concurrent reuses all get here; only the one that revoked the family records
                // it, and the others are refused as revoked.
                let events = [reuse, revoked];
                let mut newly = self
                    .store
                    .revoke_family(&family_id, now, "reuse_detected", &events)
                    .await;
                // A lost answer is asked once more: revoking is a compare-and-set, so a
                // revocation that did commit is found done, and one that did not is done now
                // rather than left to a retry that may never come.
                if matches!(newly, Err(StoreError::Unavailable(_))) {
                    newly = self
                        .store
                        .revoke_family(&family_id, now, "reuse_detected", &events)
                        .await;
                }
                if newly? {
                    metrics::counter!("tessera_refresh_reuse_detected_total").increment(1);
                    return Ok(());
                }
                ("revoked", Some(username))
            }
            Refusal::Unknown => ("unknown_token", None),
            Refusal::Expired { username } => ("expired", Some(username)),
            Refusal::Revoked { username } => ("revoked", Some(username)),
            Refusal::UserDisabled { username } => ("user_disabled", Some(username)),
            Refusal::ReusedWithinGrace { username } => ("reused_within_grace", Some(username)),
        };
        let event = AuditEvent::new(
            now,
            actor,
            "refresh.failure",
            username.clone().unwrap_or_default(),
        )
        .outcome("failure")
        .client(&client.client_id)
        .details(json!({ "reason": reason }))
        .user_if_known(username);
        self.record(&[event]).await?;
        Ok(())
    }

    /// Revokes the family of a refresh token `client` presented but was not issued, as
    /// [`OAuth::refresh_grant`] does for a wrong client; nothing else is looked at or changed.
    pub(super) async fn detect_stolen_refresh_token(
        &self,
        client: &ClientRecord,
        params: &super::Params,
    ) -> Result<(), OAuthError> {
        let Some(presented) = params.get("refresh_token") else {
            return Ok(());
        };
        if !presented.starts_with(tokens::REFRESH_PREFIX) || presented.len() > 128 {
            return Ok(());
        }
        let found = self
            .store
            .find_refresh_token(&tokens::hash(presented))
            .await?;
        if let Some(found) = found
            && found.client_id != client.client_id
        {
            self.revoke_stolen_family(
                client,
                found.username,
                found.family_id,
                found.client_id,
                self.clock.now(),
            )
            .await?;
        }
        Ok(())
    }

    /// A client presented a refresh token issued to another: whoever holds it, the family can
    /// no longer be trusted, so it is revoked (RFC 9700 §4.14.2) and the attempt audited as
    /// suspected theft. The owner's next refresh then fails and its user signs in again.
    async fn revoke_stolen_family(
        &self,
        presenter: &ClientRecord,
        username: String,
        family_id: String,
        owner_client: String,
        now: i64,
    ) -> Result<(), OAuthError> {
        let actor = Self::actor(&presenter.client_id);
        let suspected = AuditEvent::new(now, actor.clone(), "refresh.theft_suspected", &family_id)
            .outcome("denied")
            .user(&username)
            .client(&presenter.client_id)
            .details(json!({ "reason": "wrong_client", "owner_client": owner_client }));
        let revoked = AuditEvent::new(now, actor, "refresh.family_revoked", &family_id)
            .user(&username)
            .client(&presenter.client_id)
            .details(json!({ "reason": "wrong_client", "owner_client": owner_client }));
        let newly = self
            .store
            .revoke_family(
                &family_id,
                now,
                "wrong_client",
                &[suspected.clone(), revoked],
            )
            .await?;
        if !newly {
            // Revoked before: the attempt is still worth a row.
            self.record(&[suspected]).await?;
        }
        metrics::counter!("tessera_refresh_theft_suspected_total").increment(1);
        Ok(())
    }
}
