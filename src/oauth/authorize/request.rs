//! Reading an authorization request (RFC 6749 §4.1.1, OAuth 2.1 §4.1.1, OIDC Core §3.1.2.1):
//! first the client and its redirect URI, whose failures are shown to the user and never
//! redirected (RFC 6749 §4.1.2.1), then everything else, whose failures go back to the client.

use std::borrow::Cow;

use url::Url;

use crate::store::ClientRecord;

use super::super::{OAuth, OAuthError, Params, redirect_uri, scope};

/// Longest `state`, `nonce` and `login_hint` accepted: they come back in URLs and pages.
const MAX_STATE: usize = 1024;
const MAX_NONCE: usize = 512;
const MAX_LOGIN_HINT: usize = 256;

/// What `prompt` asked for (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A request whose client and redirect URI are known good.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest {
    pub client: ClientRecord,
    /// Where the browser goes back to.
    pub redirect_uri: String,
    /// Whether the request named it (then the token request must name it too).
    pub redirect_uri_given: bool,
    pub state: Option<String>,
    /// The parameters as sent, carried through the sign-in and consent forms.
    pub params: Params,
}

/// A request that also passed every other check.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub base: AuthorizationRequest,
    pub scope: Vec<String>,
    pub code_challenge: String,
    pub nonce: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
}

/// Why a request is refused.
#[derive(Debug)]
pub enum Refusal {
    /// The client or redirect URI is not known good: shown to the user, never redirected.
    Page(Cow<'static, str>),
    /// Sent back to the client's redirect URI (RFC 6749 §4.1.2.1).
    Redirect {
        request: Box<AuthorizationRequest>,
        error: &'static str,
        description: Cow<'static, str>,
    },
    /// The server cannot answer now (database, overload): neither the user's nor the client's
    /// fault.
    Failed(OAuthError),
}

impl From<OAuthError> for Refusal {
    fn from(err: OAuthError) -> Self {
        Self::Failed(err)
    }
}

impl From<crate::store::StoreError> for Refusal {
    fn from(err: crate::store::StoreError) -> Self {
        Self::Failed(err.into())
    }
}

impl ValidRequest {
    /// A digest of the request's parameters, whatever their order: what a consent page was
    /// shown for.
    pub fn fingerprint(&self) -> Vec<u8> {
        let mut pairs: Vec<&(String, String)> = self.base.params.pairs().iter().collect();
        pairs.sort();
        let mut text = String::new();
        for (k, v) in pairs {
            text.push_str(k);
            text.push('\0');
            text.push_str(v);
            text.push('\0');
        }
        crate::crypto::tokens::hash(&text)
    }
}

impl AuthorizationRequest {
    fn refuse(&self, error: &'static str, description: impl Into<Cow<'static, str>>) -> Refusal {
        Refusal::Redirect {
            request: Box::new(self.clone()),
            error,
            description: description.into(),
        }
    }

    /// The redirect URI with `pairs`, then `state` and `iss` (RFC 9207) appended.
    pub fn respond(&self, issuer: &str, pairs: &[(&str, &str)]) -> String {
        // Checked at registration and again here: a URI the parser refuses is never stored.
        let Ok(mut url) = Url::parse(&self.redirect_uri) else {
            return self.redirect_uri.clone();
        };
        {
            let mut query = url.query_pairs_mut();
            for (k, v) in pairs {
                query.append_pair(k, v);
            }
            if let Some(state) = &self.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", issuer);
        }
        url.into()
    }
}

impl OAuth {
    /// Checks an authorization request: the client and redirect URI first, then the rest.
    pub async fn authorization_request(&self, params: &Params) -> Result<ValidRequest, Refusal> {
        let base = self.client_and_redirect(params).await?;
        let get = |name: &str| params.get(name);
        if let Some(mode) = get("response_mode")
            && mode != "query"
        {
            return Err(base.refuse("invalid_request", "response_mode must be query"));
        }
        match get("response_type") {
            None => return Err(base.refuse("invalid_request", "missing parameter: response_type")),
            Some("code") => {}
            Some(_) => {
                return Err(base.refuse("unsupported_response_type", "response_type must be code"));
            }
        }
        if get("request").is_some() {
            return Err(base.refuse("request_not_supported", "request objects are not supported"));
        }
        if get("request_uri").is_some() {
            return Err(base.refuse("request_uri_not_supported", "request_uri is not supported"));
        }
        if !base.client.allows_grant("authorization_code") {
            return Err(base.refuse(
                "unauthorized_client",
                "this client may not use the authorization code grant",
            ));
        }
        // PKCE for every client (RFC 9700 §2.1.1), S256 only: plain would hand the verifier
        // to whoever reads the request.
        let Some(code_challenge) = get("code_challenge") else {
            return Err(base.refuse(
                "invalid_request",
                "code_challenge is required (PKCE with S256)",
            ));
        };
        if get("code_challenge_method") != Some("S256") {
            return Err(base.refuse("invalid_request", "code_challenge_method must be S256"));
        }
        if code_challenge.len() != 43
            || !code_challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(base.refuse(
                "invalid_request",
                "code_challenge must be a base64url SHA-256 digest (43 characters)",
            ));
        }
        let scope = match scope::grant(get("scope"), &base.client.scopes) {
            Ok(scope) => scope,
            Err(e) => return Err(base.refuse("invalid_scope", e.description())),
        };
        if scope.iter().any(|s| s == "openid") && !base.redirect_uri_given {
            return Err(base.refuse(
                "invalid_request",
                "redirect_uri is required with the openid scope",
            ));
        }
        let prompt = match parse_prompt(get("prompt")) {
            Ok(prompt) => prompt,
            Err(why) => return Err(base.refuse("invalid_request", why)),
        };
        let max_age = match get("max_age").map(str::parse::<i64>) {
            None => None,
            Some(Ok(age)) if age >= 0 => Some(age),
            Some(_) => {
                return Err(base.refuse("invalid_request", "max_age must be a number of seconds"));
            }
        };
        let nonce = get("nonce").map(str::to_owned);
        if nonce.as_ref().is_some_and(|n| n.len() > MAX_NONCE) {
            return Err(base.refuse("invalid_request", "nonce is too long"));
        }
        let login_hint = get("login_hint")
            .filter(|h| h.chars().count() <= MAX_LOGIN_HINT && !h.chars().any(char::is_control))
            .map(str::to_owned);
        Ok(ValidRequest {
            base,
            scope,
            code_challenge: code_challenge.to_owned(),
            nonce,
            prompt,
            max_age,
            login_hint,
        })
    }

    /// The client and the redirect URI; any failure here is shown, not redirected.
    async fn client_and_redirect(&self, params: &Params) -> Result<AuthorizationRequest, Refusal> {
        let page = |why: &'static str| Refusal::Page(why.into());
        let client_id = params
            .get("client_id")
            .ok_or_else(|| page("The request does not say which application is asking."))?;
        let client = match self.store.cached_client(client_id) {
            Some(client) => Some(client),
            None => self.store.find_client(client_id).await?,
        };
        let client =
            client.ok_or_else(|| page("The application that sent you here is unknown."))?;
        let redirect_uri_given = params.get("redirect_uri").is_some();
        let redirect_uri = match (params.get("redirect_uri"), client.redirect_uris.as_slice()) {
            (Some(uri), registered) if redirect_uri::matches(registered, uri) => uri.to_owned(),
            (Some(_), _) => {
                return Err(page(
                    "The address the application asked to return you to is not registered for it.",
                ));
            }
            (None, [only]) => only.clone(),
            (None, []) => return Err(page("The application has no registered return address.")),
            (None, _) => {
                return Err(page(
                    "The request does not say where to return you (redirect_uri is required).",
                ));
            }
        };
        let state = params.get("state").map(str::to_owned);
        if state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
            return Err(page("The request's state parameter is too long."));
        }
        Ok(AuthorizationRequest {
            client,
            redirect_uri,
            redirect_uri_given,
            state,
            params: params.clone(),
        })
    }
}

fn parse_prompt(raw: Option<&str>) -> Result<Prompt, &'static str> {
    let mut prompt = Prompt::default();
    for value in raw.unwrap_or("").split(' ').filter(|v| !v.is_empty()) {
        match value {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            "consent" => prompt.consent = true,
            // One account per browser: there is nothing to select.
            "select_account" => {}
            _ => return Err("prompt may hold none, login, consent and select_account"),
        }
    }
    if prompt.none && (prompt.login || prompt.consent) {
        return Err("prompt=none cannot be combined with other values");
    }
    Ok(prompt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_values() {
        assert!(parse_prompt(Some("none")).is_ok_and(|p| p.none));
        assert!(parse_prompt(Some("login consent")).is_ok_and(|p| p.login && p.consent));
        assert!(parse_prompt(Some("none login")).is_err());
        assert!(parse_prompt(Some("bogus")).is_err());
        assert!(parse_prompt(None).is_ok_and(|p| !p.none && !p.login));
    }
}
