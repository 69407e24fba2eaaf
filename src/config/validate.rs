//! What is checked once the settings are loaded: values that parse but cannot work together.

use std::time::Duration;

use super::redact::is_password_key;
use super::{Settings, SettingsError};

impl Settings {
    pub(super) fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |msg: &str| Err(SettingsError::Invalid(msg.to_string()));
        if !(self.server.issuer.starts_with("https://")
            || self.server.issuer.starts_with("http://"))
        {
            return invalid("server.issuer must be an http:// or https:// URL");
        }
        if self.server.max_body_bytes < 256 {
            return invalid("server.max_body_bytes must be at least 256");
        }
        if self.server.tls.cert.is_some() != self.server.tls.key.is_some() {
            return invalid("server.tls.cert and server.tls.key go together");
        }
        if self.server.request_timeout.is_zero() {
            return invalid("server.request_timeout must be more than 0");
        }
        // sqlx reads `password` alone; any other password-like parameter it does not know, it
        // logs with its value as it connects.
        if let Some((_, query)) = self.database.url.expose().split_once('?')
            && query
                .split('&')
                .filter_map(|pair| pair.split_once('=').map(|(key, _)| key))
                .any(|key| is_password_key(key) && key != "password")
        {
            return invalid(
                "database.url: the only password parameter understood is `password` (lower case); \
                 sslpassword and other spellings are not supported",
            );
        }
        if self.database.max_connections == 0 {
            return invalid("database.max_connections must be at least 1");
        }
        if self.passwords.min_length == 0 || self.passwords.min_length > self.passwords.max_length {
            return invalid("passwords.min_length must be between 1 and passwords.max_length");
        }
        if self.tokens.clock_leeway > Duration::from_secs(300) {
            return invalid("tokens.clock_leeway must be at most 5m");
        }
        if self.tokens.access_ttl.as_secs() == 0 {
            return invalid("tokens.access_ttl must be at least 1s");
        }
        if self.tokens.refresh_idle_ttl.as_secs() == 0
            || self.tokens.refresh_absolute_ttl.as_secs() == 0
        {
            return invalid(
                "tokens.refresh_idle_ttl and tokens.refresh_absolute_ttl must be at least 1s",
            );
        }
        if self.security.max_failures < 1 || self.security.max_backoff < Duration::from_secs(2) {
            return invalid(
                "security.max_failures must be at least 1 and security.max_backoff at least 2s",
            );
        }
        if self.login.session_idle_ttl.as_secs() == 0
            || self.login.session_absolute_ttl < self.login.session_idle_ttl
        {
            return invalid(
                "login.session_idle_ttl must be at least 1s and login.session_absolute_ttl no shorter",
            );
        }
        if !self.login.logo_url.is_empty()
            && !url::Url::parse(&self.login.logo_url).is_ok_and(|u| u.scheme() == "https")
        {
            return invalid("login.logo_url must be an https:// URL, or empty");
        }
        if self.login.product_name.trim().is_empty() || self.login.product_name.chars().count() > 64
        {
            return invalid("login.product_name must have 1 to 64 characters");
        }
        if !(0.0..=1.0).contains(&self.exceptions.sample_rate) {
            return invalid("exceptions.sample_rate must be between 0.0 and 1.0");
        }
        if self.maintenance.gc_batch_size < 1 {
            return invalid("maintenance.gc_batch_size must be at least 1");
        }
        const REGISTERED: [&str; 12] = [
            "iss",
            "sub",
            "aud",
            "exp",
            "nbf",
            "iat",
            "jti",
            "client_id",
            "scope",
            "preferred_username",
            "sid",
            "",
        ];
        if REGISTERED.contains(&self.tokens.roles_claim.as_str()) {
            return invalid(
                "tokens.roles_claim must be a claim name of its own (not empty, iss, sub, aud, ...)",
            );
        }
        if self.keys.rotation_interval <= self.keys.publish_ahead {
            return invalid("keys.rotation_interval must be longer than keys.publish_ahead");
        }
        crate::crypto::password::Hasher::params_from(&self.passwords.hash_params())
            .map_err(|e| SettingsError::Invalid(format!("passwords.argon2_*: {e}")))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Settings, test_env as env};

    #[test]
    fn a_zero_request_timeout_is_refused() {
        let err = Settings::load_from(None, &env(&[("TESSERA__SERVER__REQUEST_TIMEOUT", "0s")]))
            .expect_err("zero");
        assert!(err.to_string().contains("request_timeout"), "{err}");
    }
}
