//! The OAuth error codes of RFC 6749 §5.2 (plus RFC 6749 §4.1.2.1's temporarily_unavailable),
//! and the one place domain failures below this layer turn into them.

use std::borrow::Cow;

use crate::crypto::CryptoError;
use crate::crypto::password::HashError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("invalid_request: {0}")]
    InvalidRequest(Cow<'static, str>),
    /// Client authentication failed; answered with 401 and `WWW-Authenticate: Basic`.
    #[error("invalid_client: {0}")]
    InvalidClient(Cow<'static, str>),
    #[error("invalid_grant: {0}")]
    InvalidGrant(Cow<'static, str>),
    #[error("unauthorized_client: {0}")]
    UnauthorizedClient(Cow<'static, str>),
    #[error("unsupported_grant_type: {0}")]
    UnsupportedGrantType(Cow<'static, str>),
    #[error("invalid_scope: {0}")]
    InvalidScope(Cow<'static, str>),
    /// An authenticated client lacking a permission (introspection): 403.
    #[error("unauthorized_client: {0}")]
    NotPermitted(Cow<'static, str>),
    /// RFC 7009 §2.2.1: a `token_type_hint` the server cannot handle.
    #[error("unsupported_token_type: {0}")]
    UnsupportedTokenType(Cow<'static, str>),
    /// The body exceeds the configured limit (413).
    #[error("request body too large")]
    PayloadTooLarge(usize),
    /// Overload or a database outage: 503 with Retry-After.
    #[error("temporarily_unavailable: {0}")]
    TemporarilyUnavailable(Cow<'static, str>),
    /// Anything else; its cause is logged, never shown.
    #[error("server_error")]
    Server(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl OAuthError {
    /// The RFC error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::PayloadTooLarge(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnauthorizedClient(_) | Self::NotPermitted(_) => "unauthorized_client",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::UnsupportedTokenType(_) => "unsupported_token_type",
            Self::TemporarilyUnavailable(_) => "temporarily_unavailable",
            Self::Server(_) => "server_error",
        }
    }

    /// What the caller may read.
    pub fn description(&self) -> Cow<'static, str> {
        match self {
            Self::InvalidRequest(d)
            | Self::InvalidClient(d)
            | Self::InvalidGrant(d)
            | Self::UnauthorizedClient(d)
            | Self::NotPermitted(d)
            | Self::UnsupportedGrantType(d)
            | Self::InvalidScope(d)
            | Self::UnsupportedTokenType(d)
            | Self::TemporarilyUnavailable(d) => d.clone(),
            Self::PayloadTooLarge(limit) => format!("request body exceeds {limit} bytes").into(),
            Self::Server(_) => "internal error".into(),
        }
    }

    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidRequest(d.into())
    }

    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidGrant(d.into())
    }

    pub fn invalid_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidClient(d.into())
    }
}

impl From<StoreError> for OAuthError {
    fn from(err: StoreError) -> Self {
        match err {
            err if err.is_unavailable() => {
                tracing::warn!(error = %err, "database unavailable");
                Self::TemporarilyUnavailable(
                    "the authorization server is temporarily unavailable".into(),
                )
            }
            other => Self::Server(Box::new(other)),
        }
    }
}

impl From<HashError> for OAuthError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => {
                Self::TemporarilyUnavailable("too many logins in progress; retry shortly".into())
            }
            HashError::Crypto(e) => Self::Server(Box::new(e)),
        }
    }
}

impl From<CryptoError> for OAuthError {
    fn from(err: CryptoError) -> Self {
        Self::Server(Box::new(err))
    }
}
