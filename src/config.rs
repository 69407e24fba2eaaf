//! Settings: `config/default.toml` (compiled in) < `--config FILE` < `TESSERA__SECTION__KEY`
//! environment variables (and `DATABASE_URL`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

use crate::crypto::password::HasherOptions;
use crate::secret::Secret;

const DEFAULTS: &str = include_str!("../config/default.toml");
/// The default of `database.url`, as written in `config/default.toml`.
const DEFAULT_DATABASE_URL: &str = "sqlite://tessera.db";

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
    pub audit: AuditSettings,
    pub maintenance: MaintenanceSettings,
    pub log: LogSettings,
    pub telemetry: TelemetrySettings,
    pub metrics: MetricsSettings,
    pub exceptions: ExceptionSettings,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExceptionSettings {
    /// A Sentry-protocol DSN (Sentry, self-hosted Sentry, GlitchTip, Bugsink) that unexpected
    /// errors are reported to; empty: off, unless `SENTRY_DSN` is set.
    pub dsn: Secret,
    /// The environment events are tagged with (production, staging, ...).
    pub environment: String,
    /// The share of events sent, from 0.0 to 1.0.
    pub sample_rate: f32,
}

impl fmt::Debug for ExceptionSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExceptionSettings")
            .field("dsn", &(!self.dsn.expose().is_empty()))
            .field("environment", &self.environment)
            .field("sample_rate", &self.sample_rate)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Where /metrics is served: an address of its own (the default, loopback only), or
    /// "main" to put it on the OAuth listener, where anyone who reaches that can read it.
    pub bind: MetricsBind,
}

/// `metrics.bind`: a listener of its own, or the main one by an operator's explicit choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsBind {
    Own(SocketAddr),
    Main,
}

impl<'de> Deserialize<'de> for MetricsBind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().eq_ignore_ascii_case("main") {
            return Ok(Self::Main);
        }
        text.trim().parse().map(Self::Own).map_err(|_| {
            serde::de::Error::custom(format!(
                "metrics.bind must be an address such as 127.0.0.1:9464, or \"main\"; got {text:?}"
            ))
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetrySettings {
    /// OTLP/HTTP traces endpoint (e.g. http://otel-collector:4318/v1/traces); empty: no export.
    pub otlp_endpoint: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSettings {
    /// Audit rows older than this are deleted by clean-up.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    /// "wait": a request whose events accompany no state change (failed logins,
    /// client_credentials tokens, refusals) is answered only once they have committed, and
    /// fails with 503 if they cannot be written within database.acquire_timeout. "drop": it is
    /// answered at once; events are queued in memory and dropped (counted in
    /// tessera_audit_dropped_total) when the queue is full or the process dies.
    pub on_overload: crate::store::OnOverload,
    /// Most audit INSERTs running at once per instance: one while it keeps up (batches grow
    /// with load), more only when the next batch has waited 10 ms for it.
    pub writers: usize,
    /// With on_overload = "drop" only: how long events may gather before they are written.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceSettings {
    /// How often each instance deletes what has expired; 0s turns the background task off.
    #[serde(with = "humantime_serde")]
    pub gc_interval: Duration,
    /// Rows deleted per statement, so clean-up never holds locks for long.
    pub gc_batch_size: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address and port the HTTP server listens on.
    pub bind: SocketAddr,
    /// Public base URL: the `iss` claim and the base of every metadata URL.
    pub issuer: String,
    /// Largest request body accepted by the OAuth endpoints, in bytes.
    pub max_body_bytes: usize,
    /// Grace period for in-flight requests on shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Longest a request may take before it is answered 503: a bound for what nothing else
    /// bounds (a database connection gone silent).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Serve HTTPS with these PEM files; plain HTTP when absent.
    #[serde(default)]
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Certificate chain, PEM.
    pub cert: Option<PathBuf>,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: Option<PathBuf>,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://...`; may hold a password, so never logged.
    pub url: Secret,
    /// A file holding the URL (Docker and Kubernetes secrets); excludes `url`.
    pub url_file: Option<PathBuf>,
    /// Largest number of pooled connections.
    pub max_connections: u32,
    /// Connections kept open while idle.
    pub min_connections: u32,
    /// How long a request waits for a pooled connection.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Postgres ends a session of Tessera's that has been idle inside a transaction this long
    /// (its instance or the network gone), releasing its row locks; 0 turns it off.
    #[serde(with = "humantime_serde")]
    pub idle_in_transaction_timeout: Duration,
    /// Apply pending migrations at `serve`.
    pub migrate_on_start: bool,
}

impl fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact_url(self.url.expose()))
            .field("url_file", &self.url_file)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field("migrate_on_start", &self.migrate_on_start)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordSettings {
    /// Shortest accepted password, in characters.
    pub min_length: usize,
    /// Longest accepted password, in characters.
    pub max_length: usize,
    /// argon2id memory cost in KiB.
    pub argon2_memory_kib: u32,
    /// argon2id iterations.
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// Hashes computed at once; 0 means one per core.
    pub max_concurrent: usize,
    /// How long a login waits for a hashing slot.
    #[serde(with = "humantime_serde")]
    pub queue_timeout: Duration,
}

impl PasswordSettings {
    /// The hashing parameters, in the password hasher's own terms.
    pub fn hasher_options(&self) -> HasherOptions {
        HasherOptions {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
            max_concurrent: self.max_concurrent,
            queue_timeout: self.queue_timeout,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// Lifetime of access tokens.
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Refresh token idle lifetime.
    #[serde(with = "humantime_serde")]
    pub refresh_idle_ttl: Duration,
    /// Refresh family absolute lifetime.
    #[serde(with = "humantime_serde")]
    pub refresh_absolute_ttl: Duration,
    /// Window in which a rotated refresh token is refused without revoking its family.
    #[serde(with = "humantime_serde")]
    pub refresh_reuse_grace: Duration,
    /// How long a rotated refresh token (and a revoked family) is remembered, so that
    /// presenting it again is detected as reuse; after that it is deleted and is just unknown.
    #[serde(with = "humantime_serde")]
    pub refresh_reuse_detection: Duration,
    /// `aud` for clients registered without audiences.
    pub default_audience: String,
    /// Claim name carrying the user's roles.
    pub roles_claim: String,
    /// Access tokens whose signature introspection remembers (0: verify every time).
    pub introspection_cache: usize,
    /// How far another instance's clock may run ahead of this one's: introspection accepts a
    /// token whose `nbf` or `iat` is up to this far in the future, or signed up to this long
    /// after its key stopped signing (instances hear of key changes within 2 s). `exp` is
    /// checked strictly.
    #[serde(with = "humantime_serde")]
    pub clock_leeway: Duration,
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// Algorithm of new signing keys.
    pub algorithm: crate::crypto::keys::KeyAlgorithm,
    /// Key-encryption key, 32 bytes base64; empty means "not configured".
    pub encryption_key: Secret,
    /// A file holding the key-encryption key; excludes `encryption_key`.
    pub encryption_key_file: Option<PathBuf>,
    /// Automatic rotation period.
    #[serde(with = "humantime_serde")]
    pub rotation_interval: Duration,
    /// How long a new key is published before it signs.
    #[serde(with = "humantime_serde")]
    pub publish_ahead: Duration,
    /// Cache-Control max-age of the JWKS.
    #[serde(with = "humantime_serde")]
    pub jwks_max_age: Duration,
    /// How often an instance runs key maintenance (rotation when due) and reloads the keys;
    /// changes made elsewhere arrive within a second whatever this is.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl fmt::Debug for KeySettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySettings")
            .field("algorithm", &self.algorithm)
            .field("encryption_key", &self.encryption_key)
            .field("encryption_key_file", &self.encryption_key_file)
            .field("rotation_interval", &self.rotation_interval)
            .field("publish_ahead", &self.publish_ahead)
            .field("jwks_max_age", &self.jwks_max_age)
            .field("reload_interval", &self.reload_interval)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySettings {
    /// Consecutive failures before an account is throttled.
    pub max_failures: u32,
    /// Longest throttling backoff.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Filter when RUST_LOG is unset.
    pub level: String,
    /// auto, json or pretty.
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
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
    /// Loads the layered settings from the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &vars)
    }

    /// Loads the layered settings with an explicit environment (tests use this).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            if !path.exists() {
                return Err(SettingsError::Invalid(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            builder = builder.add_source(File::from(path).required(true));
        }
        let tessera_vars: std::collections::HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("TESSERA__"))
            .cloned()
            .collect();
        let has_db_url = tessera_vars.contains_key("TESSERA__DATABASE__URL");
        builder = builder.add_source(
            Environment::with_prefix("TESSERA")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(tessera_vars)),
        );
        if !has_db_url && let Some((_, url)) = env.iter().find(|(k, _)| k == "DATABASE_URL") {
            builder = builder.set_override("database.url", url.clone())?;
        }
        let mut settings: Settings = builder.build()?.try_deserialize()?;
        // The Sentry SDKs' own variable, for a DSN not configured the Tessera way.
        if settings.exceptions.dsn.expose().is_empty()
            && let Some((_, dsn)) = env.iter().find(|(k, _)| k == "SENTRY_DSN")
        {
            settings.exceptions.dsn = Secret::new(dsn.clone());
        }
        settings.read_secret_files()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Replaces `*_file` settings with the contents of the files they name.
    fn read_secret_files(&mut self) -> Result<(), SettingsError> {
        let read = |path: &Path, key: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| {
                    SettingsError::Invalid(format!("{key}: cannot read {}: {e}", path.display()))
                })
        };
        if let Some(path) = &self.database.url_file {
            if self.database.url.expose() != DEFAULT_DATABASE_URL {
                return Err(SettingsError::Invalid(
                    "database.url and database.url_file are both set; give the URL one way".into(),
                ));
            }
            self.database.url = Secret::new(read(path, "database.url_file")?);
        }
        if let Some(path) = &self.keys.encryption_key_file {
            if !self.keys.encryption_key.is_empty() {
                return Err(SettingsError::Invalid(
                    "keys.encryption_key and keys.encryption_key_file are both set; give the key one way".into(),
                ));
            }
            self.keys.encryption_key = Secret::new(read(path, "keys.encryption_key_file")?);
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), SettingsError> {
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
        crate::crypto::password::Hasher::params_from(&self.passwords.hasher_options())
            .map_err(|e| SettingsError::Invalid(format!("passwords.argon2_*: {e}")))?;
        Ok(())
    }

    /// The issuer without a trailing slash, for building URLs.
    pub fn issuer_base(&self) -> &str {
        self.server.issuer.trim_end_matches('/')
    }
}

/// Hides the passwords of a database URL: the one in its user info
/// (`postgres://user:***@host/db`) and the values of query parameters named like a password
/// (`?password=***`, `?sslpassword=***`, any case).
pub fn redact_url(url: &str) -> String {
    // The last `@` ends the user info even when the password holds an unencoded `@`, `/` or `?`;
    // an `@` in the query makes this hide more than the password, never less.
    let (head, tail) = match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                (format!("{scheme}://{user}:***@"), host)
            }
            None => (format!("{scheme}://"), rest),
        },
        // No `scheme://` (a typo such as `postgres:/u:p@h`): whatever precedes an `@` may be
        // user info.
        None => match url.rsplit_once('@') {
            Some((_, host)) => ("***@".to_owned(), host),
            None => (String::new(), url),
        },
    };
    let redacted = match tail.split_once('?') {
        Some((path, query)) => format!("{head}{path}?{}", redact_query(query)),
        None => format!("{head}{tail}"),
    };
    hide_password_pairs(&redacted)
}

/// Fails closed: a `password=value` pair left anywhere (after an `@` the parse above took for
/// the end of the user info, or in a libpq `key=value` string) has its value hidden.
fn hide_password_pairs(text: &str) -> String {
    static PAIR: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)((?:^|[?&;\s])[a-z0-9_%]*password\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)",
        )
        .ok()
    });
    match PAIR.as_ref() {
        Some(pair) => pair
            .replace_all(text, |c: &regex::Captures<'_>| {
                if &c[2] == "***" {
                    c[0].to_owned()
                } else {
                    format!("{}***", &c[1])
                }
            })
            .into_owned(),
        // The pattern is a constant that compiles; were it not to, hide everything.
        None => "***".to_owned(),
    }
}

/// `a=1&password=***`: the values of password parameters hidden, everything else kept.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_password_key(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `password`, `sslpassword`, `PassWord`, `ssl%70assword`: any key ending in "password" once
/// decoded, whatever its case.
fn is_password_key(key: &str) -> bool {
    percent_encoding::percent_decode_str(key)
        .decode_utf8_lossy()
        .to_ascii_lowercase()
        .ends_with("password")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_match_the_documented_values() {
        let s = Settings::load_from(None, &[]).expect("defaults load");
        assert_eq!(s.server.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(s.database.url.expose(), "sqlite://tessera.db");
        assert_eq!(s.passwords.argon2_memory_kib, 19456);
        assert_eq!(s.tokens.access_ttl, Duration::from_secs(600));
        assert_eq!(s.tokens.refresh_idle_ttl, Duration::from_secs(14 * 86400));
        assert_eq!(s.server.request_timeout, Duration::from_secs(30));
        assert_eq!(
            s.database.idle_in_transaction_timeout,
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_zero_request_timeout_is_refused() {
        let err = Settings::load_from(None, &env(&[("TESSERA__SERVER__REQUEST_TIMEOUT", "0s")]))
            .expect_err("zero");
        assert!(err.to_string().contains("request_timeout"), "{err}");
    }

    #[test]
    fn environment_overrides_and_database_url_fallback() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("TESSERA__SERVER__BIND", "0.0.0.0:9999"),
                ("TESSERA__DATABASE__MAX_CONNECTIONS", "3"),
                ("DATABASE_URL", "postgres://a:b@h/db"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.server.bind.to_string(), "0.0.0.0:9999");
        assert_eq!(s.database.max_connections, 3);
        assert_eq!(s.database.url.expose(), "postgres://a:b@h/db");

        let s = Settings::load_from(
            None,
            &env(&[
                ("TESSERA__DATABASE__URL", "sqlite://x.db"),
                ("DATABASE_URL", "postgres://a:b@h/db"),
            ]),
        )
        .expect("loads");
        assert_eq!(s.database.url.expose(), "sqlite://x.db");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = Settings::load_from(None, &env(&[("TESSERA__SERVER__NOPE", "1")]))
            .expect_err("unknown key");
        assert!(err.to_string().contains("nope"), "{err}");
        let err = Settings::load_from(None, &env(&[("TESSERA__SERVER__BIND", "not an address")]))
            .expect_err("bad value");
        assert!(err.to_string().contains("bind"), "{err}");
    }

    #[test]
    fn secrets_can_come_from_files_but_not_twice() {
        let dir = tempfile::tempdir().expect("dir");
        let url_file = dir.path().join("url");
        let key_file = dir.path().join("kek");
        std::fs::write(&url_file, "postgres://u:p@h/db\n").expect("write");
        std::fs::write(&key_file, "a2V5a2V5a2V5\n").expect("write");
        let s = Settings::load_from(
            None,
            &env(&[
                (
                    "TESSERA__DATABASE__URL_FILE",
                    url_file.to_str().expect("utf8"),
                ),
                (
                    "TESSERA__KEYS__ENCRYPTION_KEY_FILE",
                    key_file.to_str().expect("utf8"),
                ),
            ]),
        )
        .expect("loads");
        assert_eq!(s.database.url.expose(), "postgres://u:p@h/db");
        assert_eq!(s.keys.encryption_key.expose(), "a2V5a2V5a2V5");
        let err = Settings::load_from(
            None,
            &env(&[
                (
                    "TESSERA__DATABASE__URL_FILE",
                    url_file.to_str().expect("utf8"),
                ),
                ("DATABASE_URL", "postgres://x/y"),
            ]),
        )
        .expect_err("both");
        assert!(err.to_string().contains("url_file"), "{err}");
        let err = Settings::load_from(
            None,
            &env(&[
                (
                    "TESSERA__KEYS__ENCRYPTION_KEY_FILE",
                    key_file.to_str().expect("utf8"),
                ),
                ("TESSERA__KEYS__ENCRYPTION_KEY", "abc"),
            ]),
        )
        .expect_err("both");
        assert!(err.to_string().contains("encryption_key_file"), "{err}");
    }

    #[test]
    fn debug_never_shows_secrets() {
        let s = Settings::load_from(
            None,
            &env(&[
                ("DATABASE_URL", "postgres://app:hunter2@db/tessera"),
                ("TESSERA__KEYS__ENCRYPTION_KEY", "c2VjcmV0c2VjcmV0"),
            ]),
        )
        .expect("loads");
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"));
        assert!(!debug.contains("c2VjcmV0c2VjcmV0"));
        assert_eq!(
            redact_url("postgres://app:pw@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
    }

    #[test]
    fn redact_url_hides_passwords_in_the_query() {
        assert_eq!(
            redact_url("postgres://db/x?user=app&password=hunter2&sslmode=require"),
            "postgres://db/x?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app@db/x?sslmode=verify-full&sslpassword=keypass"),
            "postgres://app:***@db/x?sslmode=verify-full&sslpassword=***"
        );
        // Keys match in any case and percent-encoded.
        assert_eq!(
            redact_url("postgresql://db/x?PASSWORD=a&SslPassword=b&pass%77ord=c"),
            "postgresql://db/x?PASSWORD=***&SslPassword=***&pass%77ord=***"
        );
        // Both places at once; a password holding `?` and `@` stays hidden.
        assert_eq!(
            redact_url("postgres://app:p?w@d@db/x?password=q"),
            "postgres://app:***@db/x?password=***"
        );
        // Other parameters, and URLs without a query or a scheme, are left alone.
        assert_eq!(
            redact_url("sqlite:/var/lib/tessera.db?mode=rwc"),
            "sqlite:/var/lib/tessera.db?mode=rwc"
        );
        assert_eq!(
            redact_url("sqlite://t.db?password=x"),
            "sqlite://t.db?password=***"
        );
        // An `@` in the query (Azure's user@server form) or a libpq key=value string.
        for (url, secret) in [
            (
                "postgresql://db.invalid:5432/tessera?user=app@myserver&password=hunter2",
                "hunter2",
            ),
            (
                "postgres://db.invalid/x?password=hunter3&application_name=tessera@host1",
                "hunter3",
            ),
            (
                "host=db.invalid user=app password=hunter4 dbname=x",
                "hunter4",
            ),
            ("host=db user=app password='hunter 5' dbname=x", "hunter 5"),
            ("postgres:/app:hunter6@db/x", "hunter6"),
            ("postgresql:app:hunter7@db/x", "hunter7"),
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} became {shown}");
            assert!(shown.contains("***"), "{shown}");
        }
        assert_eq!(
            redact_url("postgres://db/x?passwords_file=/p&password"),
            "postgres://db/x?passwords_file=/p&password"
        );
        for secret in ["hunter2", "keypass"] {
            let url = format!("postgres://u:{secret}@h/d?sslpassword={secret}&Password={secret}");
            assert!(!redact_url(&url).contains(secret), "{url}");
        }
    }
}
