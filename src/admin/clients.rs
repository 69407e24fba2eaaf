//! Client administration. Secrets are generated here (256 bits), shown once, stored as SHA-256.

use serde_json::json;

use super::{Admin, AdminError};
use crate::crypto::tokens;
use crate::oauth::client_credentials::looks_like_a_user_id;
use crate::oauth::{GRANT_TYPES, redirect_uri, scope};
use crate::store::{ClientRecord, NewClient, Page, StoreError};

/// What `tessera client add` asks for.
#[derive(Debug, Clone, Default)]
pub struct ClientSpec {
    pub client_id: String,
    pub name: String,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub audiences: Vec<String>,
    pub public: bool,
    pub introspect: bool,
    pub access_ttl: Option<i64>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub first_party: bool,
}

/// What `tessera client update` may change; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct ClientUpdate {
    pub name: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    pub audiences: Option<Vec<String>>,
    pub introspect: Option<bool>,
    pub access_ttl: Option<Option<i64>>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub first_party: Option<bool>,
}

/// Longest access-token lifetime a client may be given: one day.
const MAX_CLIENT_TTL: i64 = 86_400;

fn validate_client_id(id: &str) -> Result<(), AdminError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':' | b'@'));
    if !ok {
        return Err(AdminError::Invalid(
            "client ids are 1 to 128 characters of A-Z a-z 0-9 _ - . : @".into(),
        ));
    }
    if looks_like_a_user_id(id) {
        return Err(AdminError::Invalid(format!(
            "client id {id} looks like a UUID, which is how user ids look in a token's sub; choose another id"
        )));
    }
    Ok(())
}

fn validate_lists(
    grants: &[String],
    scopes: &[String],
    audiences: &[String],
    public: bool,
    introspect: bool,
    ttl: Option<i64>,
) -> Result<(), AdminError> {
    if grants.is_empty() {
        return Err(AdminError::Invalid("give at least one --grant".into()));
    }
    if let Some(bad) = grants.iter().find(|g| !GRANT_TYPES.contains(&g.as_str())) {
        return Err(AdminError::Invalid(format!(
            "unknown grant {bad}; use authorization_code, password, refresh_token or client_credentials"
        )));
    }
    if public && grants.iter().any(|g| g == "client_credentials") {
        return Err(AdminError::Invalid(
            "a public client cannot use client_credentials".into(),
        ));
    }
    if public && grants.iter().any(|g| g == "password") {
        return Err(AdminError::Invalid(
            "a public client cannot use the password grant (RFC 9700 §2.4)".into(),
        ));
    }
    if public && introspect {
        return Err(AdminError::Invalid(
            "a public client cannot be allowed to introspect".into(),
        ));
    }
    if let Some(bad) = scopes.iter().find(|s| !scope::is_valid_token(s)) {
        return Err(AdminError::Invalid(format!("invalid scope {bad:?}")));
    }
    if let Some(bad) = audiences.iter().find(|a| {
        a.is_empty() || a.len() > 256 || a.chars().any(|c| c.is_control() || c.is_whitespace())
    }) {
        return Err(AdminError::Invalid(format!("invalid audience {bad:?}")));
    }
    if ttl.is_some_and(|t| !(1..=MAX_CLIENT_TTL).contains(&t)) {
        return Err(AdminError::Invalid(
            "access token lifetime must be between 1s and 1d".into(),
        ));
    }
    Ok(())
}

/// Checks every redirect and post-logout redirect URI (`oauth::redirect_uri`); each list is
/// bounded so that a client record stays small.
/// A first-party client skips the consent page, which is only safe when its redirect proves
/// which client asked: a confidential client whose redirect URIs no other program on the
/// user's device can receive (RFC 8252 §8.6, RFC 6749 §10.2).
fn validate_first_party(
    first_party: bool,
    public: bool,
    redirects: &[String],
) -> Result<(), AdminError> {
    if !first_party {
        return Ok(());
    }
    if public {
        return Err(AdminError::Invalid(
            "a public client cannot be first-party: nothing proves which app asks for it".into(),
        ));
    }
    if let Some(uri) = redirects
        .iter()
        .find(|u| redirect_uri::any_local_app_may_receive(u))
    {
        return Err(AdminError::Invalid(format!(
            "a first-party client cannot redirect to {uri}: any app on the device may receive it"
        )));
    }
    Ok(())
}

fn validate_name(name: &str) -> Result<(), AdminError> {
    if name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(AdminError::Invalid(
            "name must be at most 200 characters, without control characters".into(),
        ));
    }
    Ok(())
}

fn validate_redirects(
    grants: &[String],
    redirects: &[String],
    post_logout: &[String],
) -> Result<(), AdminError> {
    if grants.iter().any(|g| g == "authorization_code") && redirects.is_empty() {
        return Err(AdminError::Invalid(
            "the authorization_code grant needs at least one --redirect-uri".into(),
        ));
    }
    const MAX_URIS: usize = 20;
    if redirects.len() > MAX_URIS || post_logout.len() > MAX_URIS {
        return Err(AdminError::Invalid(format!(
            "at most {MAX_URIS} redirect URIs and {MAX_URIS} post-logout redirect URIs"
        )));
    }
    for uri in redirects.iter().chain(post_logout) {
        redirect_uri::validate(uri).map_err(|e| AdminError::Invalid(e.to_string()))?;
    }
    Ok(())
}

fn dedup(mut items: Vec<String>) -> Vec<String> {
    let mut seen = Vec::new();
    items.retain(|i| {
        let fresh = !seen.contains(i);
        seen.push(i.clone());
        fresh
    });
    items
}

impl Admin {
    pub async fn client(&self, client_id: &str) -> Result<ClientRecord, AdminError> {
        self.store
            .find_client(client_id)
            .await?
            .ok_or_else(|| AdminError::NotFound(format!("client {client_id} does not exist")))
    }

    /// Registers a client; returns it with its secret (confidential clients), shown only now.
    pub async fn add_client(
        &self,
        spec: ClientSpec,
    ) -> Result<(ClientRecord, Option<String>), AdminError> {
        validate_client_id(&spec.client_id)?;
        let (grants, scopes, audiences) = (
            dedup(spec.grant_types),
            dedup(spec.scopes),
            dedup(spec.audiences),
        );
        validate_lists(
            &grants,
            &scopes,
            &audiences,
            spec.public,
            spec.introspect,
            spec.access_ttl,
        )?;
        let (redirect_uris, post_logout_redirect_uris) = (
            dedup(spec.redirect_uris),
            dedup(spec.post_logout_redirect_uris),
        );
        validate_redirects(&grants, &redirect_uris, &post_logout_redirect_uris)?;
        validate_first_party(spec.first_party, spec.public, &redirect_uris)?;
        validate_name(&spec.name)?;
        let secret = (!spec.public).then(|| tokens::generate(tokens::CLIENT_SECRET_PREFIX));
        let client = NewClient {
            client_id: spec.client_id.clone(),
            name: spec.name,
            secret_hash: secret.as_deref().map(tokens::hash),
            grant_types: grants.clone(),
            scopes: scopes.clone(),
            audiences,
            access_ttl: spec.access_ttl,
            introspect: spec.introspect,
            redirect_uris: redirect_uris.clone(),
            post_logout_redirect_uris,
            first_party: spec.first_party,
            now: self.clock.now(),
        };
        let event = self
            .event("client.add", &spec.client_id)
            .client(&spec.client_id)
            .details(json!({
                "grants": grants, "scopes": scopes, "public": spec.public,
                "introspect": spec.introspect, "redirect_uris": redirect_uris,
                "post_logout_redirect_uris": client.post_logout_redirect_uris,
                "first_party": spec.first_party,
            }));
        match self.store.create_client(&client, &event).await {
            Err(StoreError::Conflict(_)) => {
                return Err(AdminError::Conflict(format!(
                    "client {} already exists",
                    spec.client_id
                )));
            }
            other => other?,
        }
        Ok((self.client(&spec.client_id).await?, secret))
    }

    pub async fn update_client(
        &self,
        client_id: &str,
        update: ClientUpdate,
    ) -> Result<ClientRecord, AdminError> {
        let mut client = self.client(client_id).await?;
        if let Some(name) = update.name {
            client.name = name;
        }
        if let Some(g) = update.grant_types {
            client.grant_types = dedup(g);
        }
        if let Some(s) = update.scopes {
            client.scopes = dedup(s);
        }
        if let Some(a) = update.audiences {
            client.audiences = dedup(a);
        }
        if let Some(i) = update.introspect {
            client.introspect = i;
        }
        if let Some(t) = update.access_ttl {
            client.access_ttl = t;
        }
        if let Some(r) = update.redirect_uris {
            client.redirect_uris = dedup(r);
        }
        if let Some(r) = update.post_logout_redirect_uris {
            client.post_logout_redirect_uris = dedup(r);
        }
        if let Some(f) = update.first_party {
            client.first_party = f;
        }
        validate_redirects(
            &client.grant_types,
            &client.redirect_uris,
            &client.post_logout_redirect_uris,
        )?;
        validate_first_party(
            client.first_party,
            client.is_public(),
            &client.redirect_uris,
        )?;
        validate_name(&client.name)?;
        validate_lists(
            &client.grant_types,
            &client.scopes,
            &client.audiences,
            client.is_public(),
            client.introspect,
            client.access_ttl,
        )?;
        let event = self.event("client.update", client_id).client(client_id).details(json!({
            "grants": client.grant_types, "scopes": client.scopes, "introspect": client.introspect,
            "name": client.name, "redirect_uris": client.redirect_uris,
            "post_logout_redirect_uris": client.post_logout_redirect_uris,
            "first_party": client.first_party,
        }));
        self.store
            .update_client(&client, self.clock.now(), &event)
            .await?;
        self.client(client_id).await
    }

    pub async fn list_clients(&self, page: &Page) -> Result<Vec<ClientRecord>, AdminError> {
        Ok(self.store.list_clients(page).await?)
    }

    /// A new secret for a confidential client. It works at once; the old one stops working at
    /// once here and, on Postgres, within milliseconds on running servers (their client cache).
    pub async fn rotate_client_secret(
        &self,
        client_id: &str,
    ) -> Result<(ClientRecord, String), AdminError> {
        let client = self.client(client_id).await?;
        if client.is_public() {
            return Err(AdminError::Invalid(format!(
                "client {client_id} is public and has no secret"
            )));
        }
        let secret = tokens::generate(tokens::CLIENT_SECRET_PREFIX);
        let event = self
            .event("client.rotate_secret", client_id)
            .client(client_id);
        self.store
            .set_client_secret(client_id, &tokens::hash(&secret), self.clock.now(), &event)
            .await?;
        Ok((self.client(client_id).await?, secret))
    }

    /// Deletes a client and, with it, every refresh token it holds.
    pub async fn delete_client(&self, client_id: &str) -> Result<(), AdminError> {
        let event = self.event("client.delete", client_id).client(client_id);
        match self.store.delete_client(client_id, &event).await {
            Err(StoreError::NotFound(_)) => Err(AdminError::NotFound(format!(
                "client {client_id} does not exist"
            ))),
            other => Ok(other?),
        }
    }
}
