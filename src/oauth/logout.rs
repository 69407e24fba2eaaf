//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the browser's login
//! session, and sends it on only to a post-logout redirect URI registered for the client.

use serde_json::Value;
use url::Url;

use super::authorize::Refusal;
use super::{OAuth, Params};

/// What the logout endpoint does next.
#[derive(Debug)]
pub enum Logout {
    /// No proof the client asked (no valid `id_token_hint`): ask the user first, so a link
    /// on another site cannot sign them out.
    Confirm,
    /// Signed out: go on to this URL, or show the signed-out page.
    Done(Option<String>),
}

/// A logout request's checked parameters.
#[derive(Debug)]
pub struct LogoutRequest {
    /// Where to go afterwards, with `state` appended.
    pub then: Option<String>,
    /// The session the `id_token_hint` names, when it holds a valid one.
    hinted_session: Option<String>,
}

impl OAuth {
    /// Checks the parameters: a post-logout redirect URI only with a client it is registered
    /// for, named by `client_id` or by the `id_token_hint`'s audience (which must agree).
    pub async fn logout_request(&self, params: &Params) -> Result<LogoutRequest, Refusal> {
        let page = |why: &'static str| Refusal::Page(why.into());
        let hint = match params.get("id_token_hint") {
            None => None,
            Some(token) => Some(
                self.keys
                    .verification_keys()
                    .verify_id_token_hint(token, &self.policy.issuer)
                    .map_err(|_| {
                        page("The sign-out request carries an ID token this server did not issue.")
                    })?,
            ),
        };
        let hinted_client = hint
            .as_ref()
            .and_then(|c| c.get("aud"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let client_id = match (params.get("client_id"), hinted_client.as_deref()) {
            (Some(a), Some(b)) if a != b => {
                return Err(page(
                    "The sign-out request names two different applications.",
                ));
            }
            (Some(a), _) => Some(a.to_owned()),
            (None, b) => b.map(str::to_owned),
        };
        let then = match params.get("post_logout_redirect_uri") {
            None => None,
            Some(uri) => {
                let Some(client_id) = &client_id else {
                    return Err(page(
                        "The sign-out request does not say which application is asking.",
                    ));
                };
                let client = self
                    .store
                    .find_client(client_id)
                    .await?
                    .ok_or_else(|| page("The application that sent you here is unknown."))?;
                // Registered as redirect URIs are: a loopback one on any port (RFC 8252 §7.3),
                // since a native app's listener binds whatever port is free.
                if !super::redirect_uri::matches(&client.post_logout_redirect_uris, uri) {
                    return Err(page(
                        "The address the application asked to send you to after signing out is not registered for it.",
                    ));
                }
                let mut url = Url::parse(uri)
                    .map_err(|_| page("The post-logout redirect URI is not a valid URL."))?;
                if let Some(state) = params.get("state") {
                    url.query_pairs_mut().append_pair("state", state);
                }
                Some(url.to_string())
            }
        };
        Ok(LogoutRequest {
            then,
            hinted_session: hint
                .as_ref()
                .and_then(|c| c.get("sid"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }

    /// `GET`/`POST` of the end-session endpoint. The browser's session ends at once when a
    /// valid `id_token_hint` names it (the client holding that ID token asks); a browser
    /// signed out already goes straight on. Otherwise the user is asked, so that neither a
    /// link on another site nor a stale or another user's ID token signs anyone out.
    pub async fn logout(&self, params: &Params, cookie: Option<&str>) -> Result<Logout, Refusal> {
        let request = self.logout_request(params).await?;
        let current = self.browser_session_id(cookie).await?;
        match (&request.hinted_session, current) {
            (Some(sid), Some(session)) if *sid == session => {
                self.sign_out(sid, "rp_initiated_logout").await?;
                Ok(Logout::Done(request.then))
            }
            (Some(_), None) => Ok(Logout::Done(request.then)),
            _ => Ok(Logout::Confirm),
        }
    }

    /// The user confirmed: the browser's own session ends.
    pub async fn confirm_logout(
        &self,
        params: &Params,
        cookie: Option<&str>,
    ) -> Result<Logout, Refusal> {
        let request = self.logout_request(params).await?;
        if let Some(session) = self.browser_session_id(cookie).await? {
            self.sign_out(&session, "user_logout").await?;
        }
        Ok(Logout::Done(request.then))
    }
}
