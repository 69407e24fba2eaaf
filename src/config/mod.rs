//! Settings: `config/default.toml` (compiled in) < `--config FILE` < `TESSERA__SECTION__KEY`
//! environment variables (and `DATABASE_URL`). The section structs, the loading, the checks and
//! the redaction of database URLs each have a file of their own.

mod load;
mod redact;
mod sections;
mod validate;

use serde::Deserialize;

pub use redact::redact_url;
pub use sections::{
    AuditSettings, DatabaseSettings, ExceptionSettings, KeySettings, LogFormat, LogSettings,
    LoginSettings, MaintenanceSettings, MetricsBind, MetricsSettings, PasswordSettings,
    SecuritySettings, ServerSettings, TelemetrySettings, TlsSettings, TokenSettings,
};

/// Everything Tessera can be told; see `config/default.toml` for each key's meaning.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub passwords: PasswordSettings,
    pub tokens: TokenSettings,
    pub keys: KeySettings,
    pub security: SecuritySettings,
    pub login: LoginSettings,
    pub audit: AuditSettings,
    pub maintenance: MaintenanceSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    pub metrics: MetricsSettings,
    pub exceptions: ExceptionSettings,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    // The cause is part of the message, not a `#[source]`, so a printed chain says it once.
    #[error("configuration: {0}")]
    Load(config::ConfigError),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl From<config::ConfigError> for SettingsError {
    fn from(err: config::ConfigError) -> Self {
        Self::Load(err)
    }
}

impl Settings {
    /// The issuer without a trailing slash, for building URLs.
    pub fn issuer_base(&self) -> &str {
        self.server.issuer.trim_end_matches('/')
    }
}

/// An environment of `(name, value)` pairs, as [`Settings::load_from`] takes it.
#[cfg(test)]
fn test_env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
