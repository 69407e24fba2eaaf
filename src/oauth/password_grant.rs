//! Resource owner password credentials grant (RFC 6749 §4.3).

use serde_json::json;

use crate::crypto::password::HashError;
use crate::crypto::tokens;
use crate::store::{AuditEvent, ClientRecord, NewFamily, ThrottleState, UserRecord};

use super::issue::{Subject, TokenResponse};
use super::login_gate::{Admitted, Baton, Entry, Ticket};

use super::{OAuth, OAuthError, scope, usernames};

pub(super) const BAD_CREDENTIALS: &str = "invalid username or password";

/// Where a password was presented, as the audit log names it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Via {
    PasswordGrant,
    LoginPage,
}

impl Via {
    /// The grant the sign-in is for.
    fn grant(self) -> &'static str {
        match self {
            Self::PasswordGrant => "password",
            Self::LoginPage => "authorization_code",
        }
    }

    /// One action for every failed sign-in, so that brute force shows as one thing whichever
    /// door it comes through; the details say which.
    fn failure_action(self) -> &'static str {
        "login.failure"
    }
}

impl OAuth {
    pub(super) async fn password_grant(
        &self,
        client: &ClientRecord,
        params: &super::Params,
    ) -> Result<TokenResponse, OAuthError> {
        // The admin layer refuses to register such a client (RFC 9700 §2.4); a database written
        // before that rule may still hold one.
        if client.is_public() {
            return Err(OAuthError::UnauthorizedClient(
                "public clients may not use the password grant".into(),
            ));
        }
        let username = params.require("username")?;
        let password = params
            .get("password")
            .ok_or_else(|| OAuthError::invalid_request("missing parameter: password"))?;
        let granted = scope::grant(params.get("scope"), &client.scopes)?;
        let user = self
            .check_password(client, username, password, Via::PasswordGrant)
            .await?;
        let now = self.clock.now();
        let actor = Self::actor(&client.client_id);

        let family_id = client
            .allows_grant("refresh_token")
            .then(|| uuid::Uuid::new_v4().to_string());
        let (access_token, expires_in) = self.sign_access_token(
            client,
            Subject::User {
                user: &user,
                family: family_id.as_deref(),
            },
            &granted,
        )?;
        let login = AuditEvent::new(now, actor.clone(), "login.success", &user.username)
            .user(&user.username)
            .client(&client.client_id)
            .details(json!({ "grant": "password", "scope": granted.join(" ") }));
        let refresh_token = if let Some(family_id) = family_id {
            let token = tokens::generate(tokens::REFRESH_PREFIX);
            let family_expires_at = now.saturating_add(self.policy.refresh_absolute_ttl);
            let issued = AuditEvent::new(now, actor, "token.issued", &family_id)
                .user(&user.username)
                .client(&client.client_id)
                .details(json!({ "grant": "password", "refresh_family": family_id }));
            let created = self
                .store
                .create_family(
                    &NewFamily {
                        id: family_id.clone(),
                        user_id: user.id.clone(),
                        client_id: client.client_id.clone(),
                        scope: granted.join(" "),
                        created_at: now,
                        expires_at: family_expires_at,
                        token_hash: tokens::hash(&token),
                        idle_expires_at: now
                            .saturating_add(self.policy.refresh_idle_ttl)
                            .min(family_expires_at),
                        verified_password_hash: user.password_hash.clone(),
                        session_id: None,
                    },
                    &[login, issued],
                )
                .await?;
            if !created {
                return Err(OAuthError::invalid_grant(BAD_CREDENTIALS));
            }
            Some(token)
        } else {
            self.record(&[login]).await?;
            None
        };
        Self::count_issued("password", client);
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            refresh_token,
            scope: granted.join(" "),
            id_token: None,
        })
    }

    /// Checks a user's password as every sign-in does (the password grant, the login page):
    /// malformed input refused before hashing, the account's throttle and the per-account gate,
    /// the shared hashing queue, equal work for unknown users, every failure counted and
    /// audited. A wrong password, an unknown or disabled user and a locked account all answer
    /// the same `invalid_grant`.
    pub(super) async fn check_password(
        &self,
        client: &ClientRecord,
        username: &str,
        password: &str,
        via: Via,
    ) -> Result<UserRecord, OAuthError> {
        let now = self.clock.now();
        let actor = Self::actor(&client.client_id);
        // What an attacker typed goes into the audit log only cleaned and bounded.
        let logged_name: String = username
            .chars()
            .filter(|c| !c.is_control())
            .take(usernames::MAX_USERNAME_CHARS)
            .collect();
        let failure = |reason: &'static str| {
            metrics::counter!("tessera_login_failures_total", "reason" => reason).increment(1);
            AuditEvent::new(
                now,
                actor.clone(),
                via.failure_action(),
                logged_name.clone(),
            )
            .outcome("failure")
            .user(logged_name.clone())
            .client(&client.client_id)
            .details(json!({ "reason": reason, "grant": via.grant() }))
        };

        // Malformed usernames and oversized passwords cannot belong to an account; refusing
        // them before hashing bounds the work an attacker can ask for.
        if usernames::validate(username).is_err()
            || password.chars().count() > self.policy.password_max_length
        {
            if let Some(folded) = self
                .audit_limit
                .admit(&format!("malformed:{}", client.client_id), now)
            {
                let event = failure("malformed");
                let details =
                    json!({ "reason": "malformed", "grant": via.grant(), "folded": folded });
                self.record(&[event.details(details)]).await?;
            }
            return Err(OAuthError::invalid_grant(BAD_CREDENTIALS));
        }
        let normalized = usernames::normalize(username);
        // One queue timeout in all, for the gate and the hashing slot together.
        let deadline = tokio::time::Instant::now() + self.hasher.queue_timeout();
        // Taken before the read, so that a settle after it shows.
        let ticket = self.login_gate.ticket(&normalized);
        let (user, throttle) = self.store.find_login(&normalized).await?;
        let admission = self
            .admit_login(&normalized, now, deadline, ticket, throttle)
            .await?;
        let Some((admitted, failures)) = admission else {
            self.record(&[failure("throttled").outcome("denied")])
                .await?;
            return Err(OAuthError::invalid_grant(BAD_CREDENTIALS));
        };
        let slot = self.hasher.acquire_until(deadline).await?;
        let stored_hash = user.as_ref().map(|u| u.password_hash.as_str());
        let verified = self.hasher.verify_in(slot, stored_hash, password).await?;
        let user = match user {
            Some(user) if verified.ok && !user.disabled => user,
            other => {
                let reason = match other {
                    None => "unknown_user",
                    Some(u) if u.disabled && verified.ok => "disabled",
                    Some(_) => "wrong_password",
                };
                let settled = self.settle_failure(admitted, normalized).await;
                // Audited even when the count could not be written, and the other way round:
                // neither failure hides the other's attempt.
                let recorded = self.record(&[failure(reason)]).await;
                settled?;
                recorded?;
                return Err(OAuthError::invalid_grant(BAD_CREDENTIALS));
            }
        };
        // Most logins follow no failure, and then there is nothing to clear.
        if failures > 0 {
            self.store
                .clear_login_failures(&normalized, failures)
                .await?;
        }
        drop(admitted);
        if verified.needs_rehash {
            self.upgrade_hash_in_background(&user.id, &user.password_hash, password);
        }
        Ok(user)
    }

    /// Lets a password check of `account` go ahead unless the account is locked. At most
    /// `max_failures - failures` checks of one account run at once on this instance, so a
    /// burst of guesses meets the lock instead of racing past it; the others wait (at most the
    /// hashing queue timeout) for those to settle. `None` while locked; else the admission and
    /// the failures counted so far.
    async fn admit_login(
        &self,
        account: &str,
        now: i64,
        deadline: tokio::time::Instant,
        mut ticket: Ticket,
        mut throttle: Option<ThrottleState>,
    ) -> Result<Option<(Admitted, i64)>, OAuthError> {
        // Armed while this waiter holds a wake-up it has not used: whatever way it leaves
        // (locked, timed out, an error, cancelled), the next waiter gets it.
        let mut baton = Baton::default();
        loop {
            let (failures, locked_until) =
                throttle.map_or((0, 0), |t| (t.failures, t.locked_until));
            if locked_until > now {
                return Ok(None);
            }
            // Once a lock has run out, one check at a time: each failure relocks for longer.
            let room = usize::try_from(i64::from(self.policy.max_failures) - failures)
                .unwrap_or(0)
                .max(1);
            {
                // Registered before the check, so that every settle after it reaches a
                // different waiter.
                let mut settled = std::pin::pin!(ticket.settled());
                settled.as_mut().enable();
                match self.login_gate.try_enter(&ticket, room) {
                    Entry::Admitted(admitted) => {
                        baton.disarm();
                        return Ok(Some((admitted, failures)));
                    }
                    Entry::Stale if tokio::time::Instant::now() < deadline => {}
                    Entry::Stale => return Err(HashError::Busy.into()),
                    Entry::Full => {
                        // Someone else took the place this wake-up announced.
                        baton.disarm();
                        if tokio::time::timeout_at(deadline, settled).await.is_err() {
                            return Err(HashError::Busy.into());
                        }
                        baton.arm(&ticket);
                    }
                }
            }
            ticket = self.login_gate.ticket(account);
            throttle = self.store.login_throttle(account).await?;
        }
    }

    /// Counts a failed check, then frees its place in the gate, so the next attempt sees the
    /// count (and the lock). Fails closed: until the count is written the place stays taken,
    /// by a task that keeps retrying (backing off to every 30 s) even if this request is
    /// cancelled, so a database error never turns into an uncounted guess. The places held
    /// so are bounded by the gate (`max_failures` per account).
    async fn settle_failure(&self, admitted: Admitted, account: String) -> Result<(), OAuthError> {
        let (store, clock, policy) = (self.store.clone(), self.clock.clone(), self.policy.clone());
        let (first, first_outcome) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut first = Some(first);
            let mut pause = std::time::Duration::from_secs(1);
            loop {
                // The time of the failure, not of the request: a request that queued must not
                // write a lock that has already run out.
                let now = clock.now();
                let lock = |failures| {
                    super::throttle::lock_until(
                        failures,
                        now,
                        policy.max_failures,
                        policy.max_backoff,
                    )
                };
                let result = store.record_login_failure(&account, now, &lock).await;
                let done = result.is_ok();
                if let Some(first) = first.take() {
                    let _ = first.send(result);
                }
                if done {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(30));
            }
            drop(admitted);
        });
        match first_outcome.await {
            Ok(result) => result.map(drop).map_err(OAuthError::from),
            Err(_) => Err(OAuthError::Server("login failure task ended early".into())),
        }
    }

    /// Re-hashes with the configured parameters after a successful login, off the request.
    fn upgrade_hash_in_background(&self, user_id: &str, old_hash: &str, password: &str) {
        let (store, hasher) = (self.store.clone(), self.hasher.clone());
        let (user_id, old_hash, password) =
            (user_id.to_owned(), old_hash.to_owned(), password.to_owned());
        tokio::spawn(async move {
            let result = match hasher.hash(&password).await {
                Ok(new_hash) => store
                    .upgrade_password_hash(&user_id, &old_hash, &new_hash)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(error) = result {
                tracing::warn!(%error, "could not upgrade an outdated password hash");
            }
        });
    }
}
