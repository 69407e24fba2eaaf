//! The sections of [`Settings`](super::Settings), one struct each, every field documented as in
//! `config/default.toml`. Those holding a secret redact it in their `Debug`.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::redact_url;
use crate::crypto::password::HashParams;
use crate::secret::Secret;

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
    /// How long a refresh rotation whose answer was lost (a cut connection, a failover) keeps
    /// trying to settle before answering 503; `server.request_timeout` bounds it too.
    #[serde(with = "humantime_serde")]
    pub settle_timeout: Duration,
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
            .field("settle_timeout", &self.settle_timeout)
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
    pub fn hash_params(&self) -> HashParams {
        HashParams {
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

impl TokenSettings {
    /// How long a rotated refresh token, and a revoked family, is remembered for reuse
    /// detection: `refresh_reuse_detection`, never shorter than the reuse grace.
    pub fn reuse_detection(&self) -> Duration {
        self.refresh_reuse_detection.max(self.refresh_reuse_grace)
    }
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
pub struct LoginSettings {
    /// Shown on the sign-in and consent pages.
    pub product_name: String,
    /// An https:// logo URL; empty: none.
    pub logo_url: String,
    /// A login session unused this long ends.
    #[serde(with = "humantime_serde")]
    pub session_idle_ttl: Duration,
    /// A login session ends this long after sign-in.
    #[serde(with = "humantime_serde")]
    pub session_absolute_ttl: Duration,
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

#[cfg(test)]
mod tests {
    use super::super::{Settings, redact_url, test_env as env};

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
}
