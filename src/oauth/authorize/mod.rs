//! The authorization endpoint and Tessera's own sign-in (RFC 6749 §4.1, OAuth 2.1, OIDC Core
//! §3.1.2): which page a browser sees next, login sessions, consent, and the code handed back.
//! The HTTP layer renders the pages and keeps the cookies; the decisions are here.

mod request;

use serde_json::json;

use crate::crypto::tokens;
use crate::store::{AuditEvent, NewCode, NewSession, SessionRecord, SessionTarget, UserRecord};

use super::password_grant::Via;
use super::{OAuth, OAuthError, Params};

pub use request::{AuthorizationRequest, Prompt, Refusal, ValidRequest};

/// How long a code may be redeemed (RFC 6749 §4.1.2 recommends at most 10 minutes; OAuth 2.1
/// and the issue at hand, at most 60 s).
pub const CODE_TTL: i64 = 60;
/// Prefix of login-session cookie secrets and of codes, for secret scanners.
const SESSION_PREFIX: &str = "tsb_";
const CODE_PREFIX: &str = "tsa_";
/// A session's idle expiry is moved on at most this often, so that every page is not a write.
const TOUCH_EVERY: i64 = 60;
/// How long a consent page may be answered.
const CONSENT_TTL: i64 = 600;

/// What the browser sees next.
#[derive(Debug)]
pub enum Step {
    /// The sign-in page, with what went wrong with the last attempt, if anything.
    Login {
        request: Box<ValidRequest>,
        error: Option<&'static str>,
        username: String,
    },
    /// The consent page: may `request.base.client` have these scopes?
    Consent {
        request: Box<ValidRequest>,
        user: Box<UserRecord>,
    },
    /// Back to the client, with a code or an error.
    Redirect(String),
}

/// A step, and the session cookie to set when a sign-in started one.
#[derive(Debug)]
pub struct Outcome {
    pub step: Step,
    pub new_session: Option<NewSessionCookie>,
}

/// The secret of a new login session's cookie and how long it may live.
#[derive(Debug)]
pub struct NewSessionCookie {
    pub secret: String,
    pub max_age: i64,
}

impl From<Step> for Outcome {
    fn from(step: Step) -> Self {
        Self {
            step,
            new_session: None,
        }
    }
}

impl OAuth {
    /// `GET`/`POST /oauth/authorize`: the sign-in page, the consent page, or back to the client.
    pub async fn authorize(&self, params: &Params, cookie: Option<&str>) -> Result<Step, Refusal> {
        let request = self.authorization_request(params).await?;
        let now = self.clock.now();
        let session = self.current_session(cookie).await?;
        let fresh_enough = |s: &SessionRecord| {
            request
                .max_age
                .is_none_or(|age| now.saturating_sub(s.auth_time) <= age)
        };
        let session = session.filter(|s| !request.prompt.login && fresh_enough(s));
        let Some(session) = session else {
            if request.prompt.none {
                return Ok(self.refuse_request(
                    &request,
                    "login_required",
                    "the user is not signed in",
                ));
            }
            metrics::counter!("tessera_authorize_total", "outcome" => "login_page").increment(1);
            let username = request.login_hint.clone().unwrap_or_default();
            return Ok(Step::Login {
                request: Box::new(request),
                error: None,
                username,
            });
        };
        let Some(user) = self.store.find_user_by_id(&session.user_id).await? else {
            return Ok(Step::Login {
                request: Box::new(request),
                error: None,
                username: String::new(),
            });
        };
        Ok(self.after_sign_in(request, &session, user).await?)
    }

    /// The sign-in form: checks the password as the password grant does, starts a new login
    /// session (a new id whatever the browser had: no session fixation), and goes on.
    pub async fn sign_in(
        &self,
        params: &Params,
        username: &str,
        password: &str,
        cookie: Option<&str>,
    ) -> Result<Outcome, Refusal> {
        let request = self.authorization_request(params).await?;
        let again = |error| {
            Ok(Outcome::from(Step::Login {
                request: Box::new(request.clone()),
                error: Some(error),
                username: username.to_owned(),
            }))
        };
        if username.is_empty() || password.is_empty() {
            return again("Enter your username and password.");
        }
        let client = &request.base.client;
        let user = match self
            .check_password(client, username, password, Via::LoginPage)
            .await
        {
            Ok(user) => user,
            Err(OAuthError::InvalidGrant(_)) => {
                return again("The username or password is not right.");
            }
            Err(other) => return Err(other.into()),
        };
        let now = self.clock.now();
        // The browser's previous session, even gone idle: what it started moves to the new
        // one (the same user) or ends with it (another).
        let previous = self.browser_session_id(cookie).await?;
        let secret = tokens::generate(SESSION_PREFIX);
        let absolute = now.saturating_add(self.policy.session_absolute_ttl);
        let session = NewSession {
            id: uuid::Uuid::new_v4().to_string(),
            secret_hash: tokens::hash(&secret),
            user_id: user.id.clone(),
            auth_time: now,
            idle_expires_at: now
                .saturating_add(self.policy.session_idle_ttl)
                .min(absolute),
            expires_at: absolute,
            verified_password_hash: user.password_hash.clone(),
            replaces: previous,
        };
        let event = AuditEvent::new(
            now,
            Self::actor(&client.client_id),
            "login.page",
            &user.username,
        )
        .user(&user.username)
        .client(&client.client_id)
        .details(json!({ "grant": "authorization_code", "session": session.id }));
        if !self.store.start_session(&session, &[event]).await? {
            return again("The username or password is not right.");
        }
        let record = SessionRecord {
            id: session.id,
            user_id: user.id.clone(),
            auth_time: now,
            last_seen_at: now,
            idle_expires_at: session.idle_expires_at,
            expires_at: absolute,
        };
        let step = self.after_sign_in(request, &record, user).await?;
        Ok(Outcome {
            step,
            new_session: Some(NewSessionCookie {
                secret,
                max_age: absolute - now,
            }),
        })
    }

    /// The consent form: allowed, the scopes are remembered and a code goes back; denied, the
    /// client hears `access_denied`.
    pub async fn decide_consent(
        &self,
        params: &Params,
        allow: bool,
        cookie: Option<&str>,
    ) -> Result<Step, Refusal> {
        let request = self.authorization_request(params).await?;
        let session = self.current_session(cookie).await?;
        let user = match &session {
            Some(s) => self.store.find_user_by_id(&s.user_id).await?,
            None => None,
        };
        let (Some(session), Some(user)) = (session, user) else {
            return Ok(Step::Login {
                request: Box::new(request),
                error: Some("Your session has ended; sign in again."),
                username: String::new(),
            });
        };
        // Only the consent page this session was shown, for this very request, once: a form
        // posted without it would skip what showed it (prompt=login, max_age, the sign-in).
        let now = self.clock.now();
        let fresh_enough = request
            .max_age
            .is_none_or(|age| now.saturating_sub(session.auth_time) <= age);
        if !fresh_enough
            || !self
                .store
                .take_consent(&session.id, &request.fingerprint(), now - CONSENT_TTL)
                .await?
        {
            return Err(Refusal::Page(
                "This consent form has expired or was already answered. Go back to the application and start again."
                    .into(),
            ));
        }
        let client = &request.base.client;
        let event = |action: &'static str| {
            AuditEvent::new(
                now,
                format!("user:{}", user.username),
                action,
                &client.client_id,
            )
            .user(&user.username)
            .client(&client.client_id)
            .details(json!({ "scope": request.scope.join(" ") }))
        };
        if !allow {
            self.record(&[event("consent.denied").outcome("denied")])
                .await?;
            metrics::counter!("tessera_authorize_total", "outcome" => "access_denied").increment(1);
            return Ok(self.refuse_request(
                &request,
                "access_denied",
                "the user denied the request",
            ));
        }
        let mut remembered: Vec<String> = self
            .store
            .find_consent(&user.id, &client.client_id)
            .await?
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        for s in &request.scope {
            if !remembered.contains(s) {
                remembered.push(s.clone());
            }
        }
        self.store
            .grant_consent(
                &user.id,
                &client.client_id,
                &remembered.join(" "),
                now,
                &event("consent.granted"),
            )
            .await?;
        Ok(self.issue_code(&request, &session, &user).await?)
    }

    /// Ends the login session a cookie names, and the refresh families started from it that
    /// were not granted offline_access. `true` if there was one.
    pub async fn sign_out(&self, session_id: &str, actor: &str) -> Result<bool, OAuthError> {
        let now = self.clock.now();
        let event = AuditEvent::new(now, actor.to_owned(), "session.end", session_id);
        Ok(self
            .store
            .end_sessions(SessionTarget::One(session_id), now, "logout", &event)
            .await?
            > 0)
    }

    /// The session a cookie's secret names unless it was ended, however long it has been idle:
    /// what signing in again takes over and signing out ends.
    pub(super) async fn browser_session_id(
        &self,
        cookie: Option<&str>,
    ) -> Result<Option<String>, OAuthError> {
        match cookie.filter(|c| c.starts_with(SESSION_PREFIX) && c.len() < 100) {
            Some(secret) => Ok(self.store.find_session_id(&tokens::hash(secret)).await?),
            None => Ok(None),
        }
    }

    /// The live session a cookie's secret names, its idle expiry moved on.
    pub async fn current_session(
        &self,
        cookie: Option<&str>,
    ) -> Result<Option<SessionRecord>, OAuthError> {
        let Some(secret) = cookie.filter(|c| c.starts_with(SESSION_PREFIX) && c.len() < 100) else {
            return Ok(None);
        };
        let now = self.clock.now();
        let Some(session) = self.store.find_session(&tokens::hash(secret), now).await? else {
            return Ok(None);
        };
        if now - session.last_seen_at >= TOUCH_EVERY {
            let idle = now
                .saturating_add(self.policy.session_idle_ttl)
                .min(session.expires_at);
            self.store.touch_session(&session.id, now, idle).await?;
        }
        Ok(Some(session))
    }

    /// Signed in: consent if the client needs it and was not given it, else a code.
    async fn after_sign_in(
        &self,
        request: ValidRequest,
        session: &SessionRecord,
        user: UserRecord,
    ) -> Result<Step, OAuthError> {
        let client = &request.base.client;
        // Any app on the device could receive a public client's code at a loopback or
        // private-scheme redirect: nothing proves which client asks, so the user always
        // decides (RFC 8252 §8.6).
        let unproven = client.is_public()
            && super::redirect_uri::any_local_app_may_receive(&request.base.redirect_uri);
        // prompt=consent asks even for a first-party client.
        let needs_consent = request.prompt.consent
            || (!client.first_party
                && (unproven
                    || !super::scope::within(
                        &request.scope,
                        &self
                            .store
                            .find_consent(&user.id, &client.client_id)
                            .await?
                            .unwrap_or_default(),
                    )));
        if needs_consent {
            if request.prompt.none {
                return Ok(self.refuse_request(
                    &request,
                    "consent_required",
                    "the user must consent",
                ));
            }
            metrics::counter!("tessera_authorize_total", "outcome" => "consent_page").increment(1);
            self.store
                .hold_consent(&session.id, &request.fingerprint(), self.clock.now())
                .await?;
            return Ok(Step::Consent {
                request: Box::new(request),
                user: Box::new(user),
            });
        }
        self.issue_code(&request, session, &user).await
    }

    async fn issue_code(
        &self,
        request: &ValidRequest,
        session: &SessionRecord,
        user: &UserRecord,
    ) -> Result<Step, OAuthError> {
        let now = self.clock.now();
        let code = tokens::generate(CODE_PREFIX);
        let client = &request.base.client;
        let event = AuditEvent::new(
            now,
            Self::actor(&client.client_id),
            "code.issued",
            &user.username,
        )
        .user(&user.username)
        .client(&client.client_id)
        .details(json!({ "scope": request.scope.join(" "), "session": session.id }));
        self.store
            .insert_code(
                &NewCode {
                    code_hash: tokens::hash(&code),
                    client_id: client.client_id.clone(),
                    user_id: user.id.clone(),
                    session_id: session.id.clone(),
                    redirect_uri: request
                        .base
                        .redirect_uri_given
                        .then(|| request.base.redirect_uri.clone()),
                    scope: request.scope.join(" "),
                    code_challenge: request.code_challenge.clone(),
                    nonce: request.nonce.clone(),
                    auth_time: session.auth_time,
                    created_at: now,
                    expires_at: now + CODE_TTL,
                },
                &[event],
            )
            .await?;
        metrics::counter!("tessera_authorize_total", "outcome" => "code").increment(1);
        Ok(Step::Redirect(
            request
                .base
                .respond(&self.policy.issuer, &[("code", &code)]),
        ))
    }

    /// An error the client must hear of, sent back to its redirect URI.
    fn refuse_request(
        &self,
        request: &ValidRequest,
        error: &'static str,
        description: &str,
    ) -> Step {
        Step::Redirect(self.refusal_redirect(&request.base, error, description))
    }

    /// A refusal that goes back to the client, as the URL to send the browser to.
    pub fn refusal_redirect(
        &self,
        request: &AuthorizationRequest,
        error: &'static str,
        description: &str,
    ) -> String {
        metrics::counter!("tessera_authorize_total", "outcome" => error).increment(1);
        request.respond(
            &self.policy.issuer,
            &[("error", error), ("error_description", description)],
        )
    }
}
