//! Builds the application from [`Settings`]: database, keys, background maintenance, and an
//! HTTP server bound to its own listener (port 0 works, and [`Application::port`] tells).

mod background;
mod server;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use anyhow::Context;
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::Settings;
use crate::crypto::password::Hasher;
use crate::crypto::verified::VerifiedTokens;
use crate::http;
use crate::keys::KeyRing;
use crate::oauth::{OAuth, Policy};
use crate::store::{AuditWriter, PoolOptions, Store, WriterOptions};

use crate::keys::{key_policy, load_kek};

pub struct Application {
    port: u16,
    /// The port of the metrics listener; `None` when /metrics is on the main one.
    metrics_port: Option<u16>,
    /// The OAuth listener first; the metrics listener after it when it has its own.
    servers: Vec<Server>,
    store: Store,
    background: Vec<JoinHandle<()>>,
    /// Ends once the server (and with it every audit writer) is gone, after a last flush.
    audit_task: JoinHandle<()>,
}

/// Opens the configured database (without migrating).
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let options = PoolOptions {
        max_connections: settings.database.max_connections,
        min_connections: settings.database.min_connections,
        acquire_timeout: settings.database.acquire_timeout,
        idle_in_transaction_timeout: settings.database.idle_in_transaction_timeout,
        settle_timeout: settings.database.settle_timeout,
    };
    let url = settings.database.url.expose();
    Store::connect(url, &options).await.with_context(|| {
        format!(
            "could not open the database at {}",
            crate::config::redact_url(url)
        )
    })
}

/// The OAuth core every handler shares, and the task of its audit writer.
fn oauth_core(
    settings: &Settings,
    store: &Store,
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(OAuth, JoinHandle<()>)> {
    let hasher = Hasher::new(&settings.passwords.hash_params())?;
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
        keys,
        clock,
        policy: Arc::new(Policy::from_settings(settings)),
        audit,
        audit_limit: Arc::default(),
        login_gate: Arc::default(),
        verified: Arc::new(VerifiedTokens::new(settings.tokens.introspection_cache)),
    };
    Ok((oauth, audit_task))
}

impl Application {
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Self> {
        warn_if_plain_http(&settings.server.issuer);
        let store = open_store(&settings).await?;
        if settings.database.migrate_on_start {
            store.migrate().await.context("applying migrations")?;
        }
        let store_tasks = store.follow_changes();
        let kek = load_kek(&settings, &store, true)?;
        let keys = KeyRing::start(store.clone(), kek, clock.clone(), key_policy(&settings))
            .await
            .context("loading signing keys")?;
        let (oauth, audit_task) = oauth_core(&settings, &store, keys.clone(), clock.clone())?;
        let issuer = settings.issuer_base().to_owned();
        let algorithm = settings.keys.algorithm.as_str();
        let scopes = store.all_client_scopes().await?;
        let metadata = Arc::new(RwLock::new(http::metadata_document(
            &issuer, &scopes, algorithm,
        )));

        let background = background::spawn(
            &settings,
            &store,
            keys,
            &clock,
            metadata.clone(),
            issuer,
            algorithm,
        );
        let listeners = server::listen(&settings, oauth, metadata, store.kind())?;
        Ok(Self {
            port: listeners.port,
            metrics_port: listeners.metrics_port,
            servers: listeners.servers,
            store,
            background: background.into_iter().chain(store_tasks).collect(),
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

/// An http issuer is for development on this machine: elsewhere the sign-in pages' cookies can
/// be neither `Secure` nor `__Host-`, and anyone on the network path can read them.
fn warn_if_plain_http(issuer: &str) {
    let Ok(url) = url::Url::parse(issuer) else {
        return;
    };
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if url.scheme() == "http" && !loopback {
        tracing::warn!(
            issuer,
            "server.issuer is plain http on a host other than loopback: the sign-in session \
             and CSRF cookies cannot be Secure; serve Tessera (or its gateway) over https"
        );
    }
}
