//! Unexpected errors reported to a Sentry-protocol tracker (Sentry, GlitchTip, Bugsink): every
//! event logged at `error` (a 500 answer logs one with its cause chain) and every panic. An
//! event names the request (ids, route, client id), never carries its data, and every string
//! in it is scrubbed of secrets before it leaves.

mod layer;
mod scrub;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::Settings;

pub use layer::ExceptionLayer;
pub use scrub::scrub;
use scrub::{known_secrets, scrub_event};

/// Set once a tracker is configured: until then the layer costs one atomic load per event.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// How long shutdown waits for queued events to go out.
const FLUSH_DEADLINE: Duration = Duration::from_secs(2);
/// Events queued for sending; past this they are dropped, so a slow tracker costs nothing.
const QUEUE: usize = 64;
/// The longest one send may take: shutdown waits for the send under way, so this bounds it.
const SEND_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest shutdown waits for the tracker, all told.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("exceptions: {0}")]
pub struct ExceptionsError(String);

/// Flushes queued events (for at most [`FLUSH_DEADLINE`]) when dropped.
pub struct Reporter {
    _guard: sentry::ClientInitGuard,
}

/// Starts reporting when a DSN is configured; `None` leaves it off.
pub fn init(settings: &Settings) -> Result<Option<Reporter>, ExceptionsError> {
    let dsn = settings.exceptions.dsn.expose().trim();
    if dsn.is_empty() {
        return Ok(None);
    }
    let dsn: sentry::types::Dsn = dsn.parse().map_err(|e: sentry::types::ParseDsnError| {
        ExceptionsError(format!("dsn is not a valid DSN: {e}"))
    })?;
    let http = sentry_http::Client::builder()
        .connect_timeout(SEND_TIMEOUT)
        .timeout(SEND_TIMEOUT)
        .build()
        .map_err(|e| ExceptionsError(format!("HTTP client: {e}")))?;
    let secrets = Arc::new(known_secrets(settings));
    let mut options = sentry::ClientOptions::new()
        .release(concat!("tessera@", env!("CARGO_PKG_VERSION")))
        .environment(settings.exceptions.environment.clone())
        .sample_rate(settings.exceptions.sample_rate)
        // Breadcrumbs are earlier log lines: they could carry what the event must not.
        .max_breadcrumbs(0)
        .send_default_pii(false)
        .shutdown_timeout(FLUSH_DEADLINE)
        .transport_channel_capacity(QUEUE)
        // The defaults less sentry's panic hook, which blocks the panicking thread until the
        // queue is flushed; `report_panics` only queues.
        .default_integrations(false)
        .add_integration(sentry::integrations::backtrace::AttachStacktraceIntegration)
        .add_integration(sentry::integrations::contexts::ContextIntegration::default())
        .add_integration(sentry::integrations::backtrace::ProcessStacktraceIntegration)
        .before_send(move |event| Some(scrub_event(event, &secrets)));
    options.dsn = Some(dsn);
    options.transport = Some(Arc::new(
        move |options: &sentry::ClientOptions| -> Arc<dyn sentry::Transport> {
            match sentry::TransportOptions::try_from_client_options(options) {
                Some(general) => Arc::new(
                    sentry::transports::ReqwestHttpTransportOptions::from(general)
                        .with_client(http.clone())
                        .build(),
                ),
                // Only without a DSN, which `init` never leaves out.
                None => Arc::new(Discard),
            }
        },
    ));
    let guard = sentry::init(options);
    ENABLED.store(true, Ordering::Relaxed);
    report_panics();
    tracing::info!("reporting unexpected errors to the configured exception tracker");
    Ok(Some(Reporter { _guard: guard }))
}

/// Queues an event for every panic (while reporting is on), then lets the previous hook print it.
fn report_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ENABLED.load(Ordering::Relaxed) {
                let event = sentry::integrations::panic::PanicIntegration::new()
                    .event_from_panic_info(info);
                sentry::capture_event(event);
            }
            previous(info);
        }));
    });
}

/// Sends what is still queued and stops, waiting at most [`SHUTDOWN_DEADLINE`] whatever the
/// tracker (or the resolver of its host name) does.
pub fn shut_down(reporter: Option<Reporter>) {
    let Some(reporter) = reporter else {
        return;
    };
    ENABLED.store(false, Ordering::Relaxed);
    let (done, finished) = std::sync::mpsc::channel();
    let closing = std::thread::Builder::new()
        .name("exceptions-flush".into())
        .spawn(move || {
            drop(reporter);
            let _ = done.send(());
        });
    if closing.is_ok() && finished.recv_timeout(SHUTDOWN_DEADLINE).is_err() {
        tracing::warn!("the exception tracker did not take the last events in time; left behind");
    }
}

/// A transport that sends nothing.
struct Discard;

impl sentry::Transport for Discard {
    fn send_envelope(&self, _: sentry::Envelope) {}
}
