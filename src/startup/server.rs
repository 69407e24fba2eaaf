//! The HTTP listeners: the OAuth one, plain or TLS, and the metrics one when `metrics.bind`
//! gives /metrics an address of its own.

use std::net::TcpListener;
use std::sync::{Arc, RwLock};

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::{Context, bail};

use crate::config::{MetricsBind, Settings};
use crate::http::{self, AppState};
use crate::oauth::OAuth;

/// The running listeners.
pub(super) struct Listeners {
    pub port: u16,
    /// The port of the metrics listener; `None` when /metrics is on the main one.
    pub metrics_port: Option<u16>,
    /// The OAuth listener first; the metrics listener after it when it has its own.
    pub servers: Vec<Server>,
}

/// Binds and starts the listeners; `database` names the backend in the start-up line.
pub(super) fn listen(
    settings: &Settings,
    oauth: OAuth,
    metadata: Arc<RwLock<Arc<[u8]>>>,
    database: &'static str,
) -> anyhow::Result<Listeners> {
    let handle = crate::telemetry::metrics::install();
    let separate_metrics = match settings.metrics.bind {
        MetricsBind::Own(address) => Some(address),
        MetricsBind::Main => None,
    };
    let site = Arc::new(http::Site::new(
        &settings.login.product_name,
        &settings.login.logo_url,
        settings.issuer_base(),
    ));
    let state = web::Data::new(AppState {
        site: site.clone(),
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
    let max_body_bytes = settings.server.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            // Inside `observe`, so that a request cut short is measured and logged too.
            .wrap(actix_web::middleware::from_fn(move |req, next| {
                http::observe::deadline(request_timeout, req, next)
            }))
            .wrap(actix_web::middleware::from_fn(http::observe::observe))
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(max_body_bytes))
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
        database,
        scheme,
        "tessera listening"
    );
    let mut servers = vec![server];
    let mut metrics_port = None;
    if let Some(bind) = separate_metrics {
        let metrics_state = web::Data::new(AppState {
            site,
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
    Ok(Listeners {
        port,
        metrics_port,
        servers,
    })
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
