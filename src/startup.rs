//! Builds the application from [`Settings`]: database, keys, background maintenance, and an
//! HTTP server bound to its own listener (port 0 works, and [`Application::port`] tells).

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use anyhow::{Context, bail};

use crate::clock::Clock;
use crate::config::{MetricsBind, Settings};
use crate::crypto::keys::Kek;
use crate::crypto::password::Hasher;
use crate::crypto::verified::VerifiedTokens;
use crate::http::{self, AppState};
use crate::oauth::keyring::KeyPolicy;
use crate::oauth::maintenance::{CleanupPolicy, collect_garbage};
use crate::oauth::{KeyRing, OAuth, Policy};
use crate::store::{AuditWriter, PoolOptions, Store, WriterOptions};

pub struct Application {
    port: u16,
    /// The port of the metrics listener; `None` when /metrics is on the main one.
    metrics_port: Option<u16>,
    /// The OAuth listener first; the metrics listener after it when it has its own.
    servers: Vec<Server>,
    store: Store,
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Ends once the server (and with it every audit writer) is gone, after a last flush.
    audit_task: tokio::task::JoinHandle<()>,
}

/// Opens the configured database (without migrating).
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let options = PoolOptions {
        max_connections: settings.database.max_connections,
        min_connections: settings.database.min_connections,
        acquire_timeout: settings.database.acquire_timeout,
        idle_in_transaction_timeout: settings.database.idle_in_transaction_timeout,
    };
    let url = settings.database.url.expose();
    Store::connect(url, &options).await.with_context(|| {
        format!(
            "could not open the database at {}",
            crate::config::redact_url(url)
        )
    })
}

/// The file holding the generated key-encryption key beside a SQLite database.
fn kek_file_for(url: &str) -> Option<PathBuf> {
    let path = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    if path.is_empty() || path.contains(":memory:") {
        return None;
    }
    Some(PathBuf::from(format!("{path}.kek")))
}

/// The key-encryption key: from settings; else, on SQLite, from (or into) a file beside the
/// database; on Postgres, refused, because every instance must share one configured key.
pub fn load_kek(settings: &Settings, store: &Store, create: bool) -> anyhow::Result<Option<Kek>> {
    if !settings.keys.encryption_key.is_empty() {
        return Ok(Some(
            Kek::from_base64(settings.keys.encryption_key.expose())
                .context("keys.encryption_key")?,
        ));
    }
    if store.is_shared() {
        if create {
            bail!(
                "keys.encryption_key is required with Postgres: set TESSERA__KEYS__ENCRYPTION_KEY to 32 random bytes in base64 (e.g. `openssl rand -base64 32`)"
            );
        }
        return Ok(None);
    }
    let Some(path) = kek_file_for(settings.database.url.expose()) else {
        tracing::warn!(
            "keys.encryption_key is not set; using a throw-away key for an in-memory database"
        );
        return Ok(Some(Kek::from_base64(&Kek::generate_base64())?));
    };
    if path.exists() {
        check_private(&path)?;
        let encoded = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        return Ok(Some(
            Kek::from_base64(&encoded).with_context(|| format!("key file {}", path.display()))?,
        ));
    }
    if !create {
        return Ok(None);
    }
    let encoded = Kek::generate_base64();
    write_private_file(&path, &encoded).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(
        path = %path.display(),
        "keys.encryption_key is not set: generated a key-encryption key file beside the database; keep it with the database and set keys.encryption_key in production"
    );
    Ok(Some(Kek::from_base64(&encoded)?))
}

/// Refuses a key file that others could have written or can read.
#[cfg(unix)]
fn check_private(path: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "key file {} is accessible to other users (mode {:o}); run `chmod 600` on it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private_file(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

pub fn key_policy(settings: &Settings) -> KeyPolicy {
    let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    KeyPolicy {
        algorithm: settings.keys.algorithm,
        rotation_interval: secs(settings.keys.rotation_interval),
        publish_ahead: secs(settings.keys.publish_ahead),
        jwks_max_age: secs(settings.keys.jwks_max_age),
        access_ttl: secs(settings.tokens.access_ttl),
        clock_leeway: secs(settings.tokens.clock_leeway),
    }
}

impl Application {
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        let store = open_store(&settings).await?;
        if settings.database.migrate_on_start {
            store.migrate().await.context("applying migrations")?;
        }
        let listeners = store.follow_changes();
        let kek = load_kek(&settings, &store, true)?;
        let keys = KeyRing::start(store.clone(), kek, clock.clone(), key_policy(&settings))
            .await
            .context("loading signing keys")?;
        let hasher = Hasher::new(&settings.passwords)?;
        let (audit, audit_task) = AuditWriter::spawn(
            store.clone(),
            WriterOptions {
                on_overload: settings.audit.on_overload,
                writers: settings.audit.writers,
                linger: settings.audit.flush_interval,
                patience: settings.database.acquire_timeout,
            },
        );
        let oauth = OAuth {
            store: store.clone(),
            hasher,
            keys: keys.clone(),
            clock: clock.clone(),
            policy: Arc::new(Policy::from_settings(&settings)),
            audit,
            audit_limit: Arc::default(),
            login_gate: Arc::default(),
            verified: Arc::new(VerifiedTokens::new(settings.tokens.introspection_cache)),
        };
        let issuer = settings.issuer_base().to_owned();
        let algorithm = settings.keys.algorithm.as_str();
        let scopes = store.all_client_scopes().await?;
        let metadata = Arc::new(RwLock::new(http::metadata_document(
            &issuer, &scopes, algorithm,
        )));

        let key_watch = tokio::spawn(key_watch_loop(store.clone(), keys.clone()));
        let maintenance = tokio::spawn(maintenance_loop(
            store.clone(),
            keys,
            metadata.clone(),
            issuer,
            algorithm,
            settings.keys.reload_interval,
        ));
        let partitions = tokio::spawn(audit_partition_loop(store.clone(), clock.clone()));
        let cleanup = tokio::spawn(cleanup_loop(
            store.clone(),
            clock.clone(),
            CleanupPolicy::from_settings(&settings),
            settings.maintenance.gc_interval,
        ));

        let handle = crate::telemetry::metrics::install();
        let separate_metrics = match settings.metrics.bind {
            MetricsBind::Own(address) => Some(address),
            MetricsBind::Main => None,
        };
        let state = web::Data::new(AppState {
            oauth: oauth.clone(),
            metadata: metadata.clone(),
            max_body_bytes: settings.server.max_body_bytes,
            // With a listener of its own, /metrics lives there only.
            metrics: if separate_metrics.is_some() {
                None
            } else {
                handle.clone()
            },
        });
        let listener = TcpListener::bind(settings.server.bind)
            .with_context(|| format!("could not listen on {}", settings.server.bind))?;
        let port = listener.local_addr()?.port();
        let workers = match settings.server.workers {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let tls = match (&settings.server.tls.cert, &settings.server.tls.key) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let request_timeout = settings.server.request_timeout;
        let server = HttpServer::new(move || {
            App::new()
                // Inside `observe`, so that a request cut short is measured and logged too.
                .wrap(actix_web::middleware::from_fn(move |req, next| {
                    http::observe::deadline(request_timeout, req, next)
                }))
                .wrap(actix_web::middleware::from_fn(http::observe::observe))
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(settings.server.max_body_bytes))
                .configure(http::routes)
        })
        .workers(workers)
        .shutdown_timeout(settings.server.shutdown_timeout.as_secs());
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .run();
        tracing::info!(
            address = %settings.server.bind.ip(),
            port,
            database = store.kind(),
            scheme,
            "tessera listening"
        );
        let mut servers = vec![server];
        let mut metrics_port = None;
        if let Some(bind) = separate_metrics {
            let metrics_state = web::Data::new(AppState {
                oauth,
                metadata,
                max_body_bytes: 0,
                metrics: handle,
            });
            let listener = TcpListener::bind(bind).with_context(|| {
                format!(
                    "metrics.bind: could not listen on {bind} (another Tessera on this host? \
                         give each its own metrics.bind)"
                )
            })?;
            let bound = listener.local_addr()?;
            metrics_port = Some(bound.port());
            tracing::info!(address = %bound, "metrics listening");
            servers.push(
                HttpServer::new(move || {
                    App::new()
                        .app_data(metrics_state.clone())
                        .configure(http::metrics_routes)
                })
                .workers(1)
                .listen(listener)?
                .run(),
            );
        }
        Ok(Self {
            port,
            metrics_port,
            servers,
            store,
            background: [maintenance, cleanup, partitions, key_watch]
                .into_iter()
                .chain(listeners)
                .collect(),
            audit_task,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port /metrics is served on when it has a listener of its own.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_port
    }

    /// The main server's handle (stopping it stops the process's serving).
    pub fn handle(&self) -> ServerHandle {
        self.servers[0].handle()
    }

    /// Serves until SIGTERM/SIGINT (or a handle's stop), then closes the pool.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let result = futures_util::future::join_all(self.servers)
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>();
        for task in &self.background {
            task.abort();
        }
        if tokio::time::timeout(Duration::from_secs(10), self.audit_task)
            .await
            .is_err()
        {
            tracing::error!("audit rows still unwritten at shutdown");
        }
        self.store.close().await;
        result.map(|_| ()).context("HTTP server failed")
    }
}

/// A rustls server configuration from PEM files.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("server.tls.cert: reading {}", cert.display()))?;
    if chain.is_empty() {
        bail!("server.tls.cert: no certificate in {}", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("server.tls.key: reading {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("server.tls: certificate and key do not match")
}

/// Rotates and reloads keys and refreshes the metadata on every instance, periodically.
async fn maintenance_loop(
    store: Store,
    keys: Arc<KeyRing>,
    metadata: Arc<RwLock<Arc<[u8]>>>,
    issuer: String,
    algorithm: &'static str,
    every: Duration,
) {
    let mut ticker = tokio::time::interval(every.max(Duration::from_millis(100)));
    ticker.tick().await;
    loop {
        ticker.tick().await;
        if let Err(error) = keys.tick().await {
            tracing::warn!(%error, "key maintenance failed; will retry");
        }
        match store.all_client_scopes().await {
            Ok(scopes) => {
                let doc = http::metadata_document(&issuer, &scopes, algorithm);
                match metadata.write() {
                    Ok(mut guard) => *guard = doc,
                    Err(poisoned) => *poisoned.into_inner() = doc,
                }
            }
            Err(error) => tracing::warn!(%error, "could not refresh metadata"),
        }
    }
}

/// Reloads the key set as soon as another process changed it (`tessera key rotate --now`,
/// `retire`, `revoke`, or another instance's rotation): woken by NOTIFY on Postgres, and on
/// both backends by a one-row summary of the key table read every [`KEY_POLL`].
async fn key_watch_loop(store: Store, keys: Arc<KeyRing>) {
    // None: the first look reloads, covering a change made while the ring was starting.
    let mut seen = None;
    loop {
        tokio::select! {
            () = store.key_change_announced() => {}
            () = tokio::time::sleep(KEY_POLL) => {}
        }
        let marker = match store.key_change_marker().await {
            Ok(marker) => marker,
            Err(error) => {
                tracing::debug!(%error, "key change poll failed; will retry");
                continue;
            }
        };
        if seen == Some(marker) {
            continue;
        }
        match keys.reload().await {
            Ok(()) => {
                tracing::info!("signing keys changed; reloaded");
                seen = Some(marker);
            }
            Err(error) => tracing::warn!(%error, "could not reload changed keys; will retry"),
        }
    }
}

/// How often each instance looks for key changes made elsewhere.
const KEY_POLL: Duration = Duration::from_millis(500);

/// Attaches the audit log's day partitions ahead of need, at start and hourly, whether or not
/// clean-up runs: without them events would pile up in the default partition.
async fn audit_partition_loop(store: Store, clock: Arc<dyn Clock>) {
    let mut ticker = tokio::time::interval(Duration::from_secs(3600));
    loop {
        ticker.tick().await;
        if let Err(error) = store
            .prepare_audit_partitions(clock.now(), crate::oauth::maintenance::AUDIT_DAYS_AHEAD)
            .await
        {
            tracing::warn!(%error, "attaching audit partitions failed; will retry");
        }
    }
}

/// Deletes what has expired, on every instance; batches keep it safe to run concurrently.
async fn cleanup_loop(store: Store, clock: Arc<dyn Clock>, policy: CleanupPolicy, every: Duration) {
    if every.is_zero() {
        return;
    }
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        match collect_garbage(&store, clock.now(), &policy).await {
            Ok(report) => tracing::debug!(?report, "clean-up done"),
            Err(error) => tracing::warn!(%error, "clean-up failed; will retry"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kek_file_sits_beside_the_database() {
        assert_eq!(
            kek_file_for("sqlite://tessera.db"),
            Some(PathBuf::from("tessera.db.kek"))
        );
        assert_eq!(
            kek_file_for("sqlite:/var/lib/t.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/t.db.kek"))
        );
        assert_eq!(kek_file_for("sqlite::memory:"), None);
    }
}
