//! Client authentication at the token, revocation and introspection endpoints
//! (RFC 6749 §2.3): client_secret_basic, client_secret_post, or a public client's bare id.

use crate::crypto::tokens;
use crate::secret::{Secret, constant_time_eq};
use crate::store::{ClientRecord, Store};

use super::OAuthError;

/// The credentials a request presented, as the HTTP layer found them.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// `Authorization: Basic` (RFC 6749 §2.3.1).
    Basic { client_id: String, secret: Secret },
    /// `client_id` and `client_secret` in the form body.
    Post { client_id: String, secret: Secret },
    /// Only `client_id`: acceptable for public clients alone.
    Public { client_id: String },
    /// Nothing at all.
    Missing,
}

impl ClientAuth {
    pub fn method(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "client_secret_basic",
            Self::Post { .. } => "client_secret_post",
            Self::Public { .. } => "none",
            Self::Missing => "missing",
        }
    }

    pub fn client_id(&self) -> Option<&str> {
        match self {
            Self::Basic { client_id, .. }
            | Self::Post { client_id, .. }
            | Self::Public { client_id } => Some(client_id),
            Self::Missing => None,
        }
    }
}

/// SHA-256 of a random value no client has: compared against when the client is unknown, so
/// unknown clients and wrong secrets cost the same.
fn dummy_hash() -> &'static [u8] {
    static DUMMY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| tokens::hash(&tokens::generate(tokens::CLIENT_SECRET_PREFIX)))
}

/// A public client from memory when it is cached as public; anything else (unknown ids,
/// confidential clients named without a secret) is decided by the database, so that only a
/// success can be faster than one query.
async fn public_client(store: &Store, client_id: &str) -> Result<Option<ClientRecord>, OAuthError> {
    match store.cached_client(client_id) {
        Some(client) if client.is_public() => Ok(Some(client)),
        _ => Ok(store.find_client(client_id).await?),
    }
}

/// Checks the presented credentials; the same `invalid_client` whatever went wrong.
pub async fn authenticate(store: &Store, auth: &ClientAuth) -> Result<ClientRecord, OAuthError> {
    let failed = || OAuthError::invalid_client("client authentication failed");
    match auth {
        ClientAuth::Missing => Err(OAuthError::invalid_client(
            "client authentication is required",
        )),
        ClientAuth::Public { client_id } => match public_client(store, client_id).await? {
            Some(client) if client.is_public() => Ok(client),
            _ => Err(failed()),
        },
        ClientAuth::Basic { client_id, secret } | ClientAuth::Post { client_id, secret } => {
            let presented = tokens::hash(secret.expose());
            let check = |client: &Option<ClientRecord>| {
                let expected = client
                    .as_ref()
                    .and_then(|c| c.secret_hash.as_deref())
                    .unwrap_or(dummy_hash());
                constant_time_eq(&presented, expected)
            };
            // A cached record may predate a secret rotation made elsewhere a moment ago, so a
            // mismatch is decided by the database. Unknown clients and wrong secrets thus both
            // cost one query; only a right secret can be answered from memory.
            let mut client = store.cached_client(client_id);
            let mut matches = check(&client);
            if !matches {
                client = store.find_client(client_id).await?;
                matches = check(&client);
            }
            match client {
                Some(client) if matches && !client.is_public() => Ok(client),
                _ => Err(failed()),
            }
        }
    }
}
