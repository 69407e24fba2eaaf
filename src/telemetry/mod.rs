//! Logging and tracing: a tracing subscriber writing JSON (production) or pretty lines (a
//! terminal), and, when `telemetry.otlp_endpoint` is set, span export over OTLP/HTTP; error
//! events go to the exception tracker when one is configured ([`exceptions`]).

pub mod exceptions;
pub mod metrics;

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;

/// Keeps the span exporter alive; [`Telemetry::shutdown`] flushes what is buffered.
#[derive(Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "could not flush spans");
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: {0}")]
pub struct TelemetryError(String);

/// Installs the global subscriber; `RUST_LOG` wins over the configured level. Safe to call
/// more than once (later calls do nothing).
pub fn init(
    level: &str,
    format: LogFormat,
    otlp_endpoint: Option<&str>,
) -> Result<Telemetry, TelemetryError> {
    // actix-http logs malformed requests (a client's doing, answered 400) at ERROR; left on,
    // any client could write error lines at will and trip log-level alerts.
    let quiet = "actix_http::h1::dispatcher=off";
    let filter = EnvFilter::try_from_default_env()
        .map(|f| match quiet.parse() {
            Ok(directive) => f.add_directive(directive),
            Err(_) => f,
        })
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},{quiet}")));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let fmt = tracing_subscriber::fmt::layer().with_target(false);
    let fmt = if json {
        fmt.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt.boxed()
    };
    let provider = match otlp_endpoint.filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| TelemetryError(e.to_string()))?;
            let resource = opentelemetry_sdk::Resource::builder()
                .with_service_name("tessera")
                .build();
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build(),
            )
        }
        None => None,
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("tessera")));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .with(exceptions::ExceptionLayer)
        .try_init();
    Ok(Telemetry { provider })
}
