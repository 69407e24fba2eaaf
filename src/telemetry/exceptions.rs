//! Unexpected errors reported to a Sentry-protocol tracker (Sentry, GlitchTip, Bugsink): every
//! event logged at `error` (a 500 answer logs one with its cause chain) and every panic. An
//! event names the request (ids, route, client id), never carries its data, and every string
//! in it is scrubbed of secrets before it leaves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use regex::Regex;
use sentry::protocol::{Event, Exception, Level, Values};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Id, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::config::Settings;

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

/// Values that must never leave even if some message quoted them: the key-encryption key and
/// the database URL's password.
fn known_secrets(settings: &Settings) -> Vec<String> {
    let mut secrets = vec![settings.keys.encryption_key.expose().to_owned()];
    let url = settings.database.url.expose();
    if let Some((_, rest)) = url.split_once("://")
        && let Some((userinfo, _)) = rest.rsplit_once('@')
        && let Some((_, password)) = userinfo.split_once(':')
    {
        secrets.push(password.to_owned());
    }
    if let Some((_, query)) = url.split_once('?') {
        for pair in query.split('&') {
            if let Some((key, value)) = pair.split_once('=')
                && key.eq_ignore_ascii_case("password")
            {
                secrets.push(value.to_owned());
            }
        }
    }
    // Each as written in the URL (percent-encoded) and decoded.
    let decoded: Vec<String> = secrets
        .iter()
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    secrets.extend(decoded);
    secrets.retain(|s| s.len() >= 4);
    secrets.sort();
    secrets.dedup();
    secrets
}

/// Replaces anything that looks like a credential in `text`.
pub fn scrub(text: &str, known: &[String]) -> String {
    static PATTERNS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
        [
            // Tessera's own refresh tokens and client secrets, wherever they start.
            (r"(ts[rc])_[A-Za-z0-9_\-]+", "${1}_[redacted]"),
            // JWTs (access tokens, and anything else signed).
            (
                r"eyJ[A-Za-z0-9_\-]*\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*",
                "[jwt redacted]",
            ),
            // user:password@ in any URL.
            (r"([a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*):[^@\s]*@", "$1:[redacted]@"),
            // Authorization header values.
            (r"(?i)\b(basic|bearer)\s+[A-Za-z0-9._~+/=\-]+", "$1 [redacted]"),
            // key=value and "key": "value" pairs whose key names a secret.
            (
                r#"(?i)\b([a-z_]*(?:password|passwd|secret|token|code|authorization|cookie|encryption_key|dsn)[a-z_]*\\?["']?\s*[=:]\s*)(\\?"[^"\\]*(?:\\.[^"\\]*)*\\?"|'[^']*'|[^\s&"',;]+)"#,
                "${1}[redacted]",
            ),
        ]
        .into_iter()
        .filter_map(|(pattern, with)| Regex::new(pattern).ok().map(|r| (r, with)))
        .collect()
    });
    let once = |text: &str| {
        let mut out = text.to_owned();
        for secret in known {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "[redacted]");
            }
        }
        for (pattern, with) in PATTERNS.iter() {
            if pattern.is_match(&out) {
                out = pattern.replace_all(&out, *with).into_owned();
            }
        }
        out
    };
    // As written, then (percent-encoded text: a form body, a query string) decoded, so that
    // neither form hides a secret from the patterns.
    let raw = once(text);
    if raw.contains('%') {
        once(&percent_encoding::percent_decode_str(&raw).decode_utf8_lossy())
    } else {
        raw
    }
}

/// The last word on what leaves, whatever produced the event (our layer or the panic hook).
fn scrub_event(mut event: Event<'static>, known: &[String]) -> Event<'static> {
    let clean = |text: &mut String| *text = scrub(text, known);
    event.request = None;
    event.user = None;
    event.breadcrumbs = Values::new();
    if let Some(message) = event.message.as_mut() {
        clean(message);
    }
    if let Some(entry) = event.logentry.as_mut() {
        clean(&mut entry.message);
        entry.params.clear();
    }
    for exception in &mut event.exception.values {
        if let Some(value) = exception.value.as_mut() {
            clean(value);
        }
        clean(&mut exception.ty);
    }
    for value in event.tags.values_mut() {
        clean(value);
    }
    event.extra.clear();
    event.fingerprint = event
        .fingerprint
        .iter()
        .map(|part| scrub(part, known).into())
        .collect::<Vec<_>>()
        .into();
    event
}

/// The facts of a request span that an event names.
#[derive(Debug, Clone, Default)]
struct RequestFields {
    request_id: Option<String>,
    trace_id: Option<String>,
    route: Option<String>,
    method: Option<String>,
    client_id: Option<String>,
}

impl RequestFields {
    /// `inner` (a span nested in `self`'s) fills what `self` left unset.
    fn merge(self, inner: Self) -> Self {
        let pick = |outer: Option<String>, inner: Option<String>| {
            outer
                .filter(|v| !v.is_empty())
                .or(inner.filter(|v| !v.is_empty()))
        };
        Self {
            request_id: pick(self.request_id, inner.request_id),
            trace_id: pick(self.trace_id, inner.trace_id),
            route: pick(self.route, inner.route),
            method: pick(self.method, inner.method),
            client_id: pick(self.client_id, inner.client_id),
        }
    }
}

impl Visit for RequestFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        let slot = match field.name() {
            "request_id" => &mut self.request_id,
            "trace_id" => &mut self.trace_id,
            "route" => &mut self.route,
            "method" => &mut self.method,
            "client_id" => &mut self.client_id,
            _ => return,
        };
        *slot = Some(value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, format!("{value:?}").trim_matches('"'));
    }
}

/// The fields of an error event.
#[derive(Debug, Default)]
struct EventFields {
    message: String,
    error: Option<String>,
    /// The cause chain, outermost first, as a JSON array of strings.
    causes: Option<String>,
}

impl Visit for EventFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_owned(),
            "error" => self.error = Some(value.to_owned()),
            "causes" => self.causes = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        // Display-formatted fields (`%x`) arrive here; their Debug is their Display.
        self.record_str(field, &format!("{value:?}"));
    }
}

/// The tracing layer that turns `error` events into tracker events.
pub struct ExceptionLayer;

impl<S> Layer<S> for ExceptionLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        // The request span carries the ids and route; a handler's span, the client id.
        let metadata = attrs.metadata();
        if !ENABLED.load(Ordering::Relaxed)
            || (metadata.name() != "request" && metadata.fields().field("client_id").is_none())
        {
            return;
        }
        let mut fields = RequestFields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if !ENABLED.load(Ordering::Relaxed) {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut recorded = RequestFields::default();
        values.record(&mut recorded);
        if let Some(fields) = span.extensions_mut().get_mut::<RequestFields>() {
            values.record(fields);
        }
        // A handler's span has ended by the time its error becomes a 500 (and is logged), so
        // the client id it learned is kept on the request span around it too.
        if let Some(client_id) = recorded.client_id.filter(|c| !c.is_empty()) {
            for outer in span.scope().skip(1) {
                if outer.name() == "request"
                    && let Some(fields) = outer.extensions_mut().get_mut::<RequestFields>()
                {
                    fields.client_id = Some(client_id);
                    break;
                }
            }
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: Context<'_, S>) {
        if !ENABLED.load(Ordering::Relaxed) || *event.metadata().level() != tracing::Level::ERROR {
            return;
        }
        let mut fields = EventFields::default();
        event.record(&mut fields);
        let request = ctx.event_scope(event).map(|scope| {
            scope
                .from_root()
                .filter_map(|span| span.extensions().get::<RequestFields>().cloned())
                .fold(RequestFields::default(), RequestFields::merge)
        });
        sentry::capture_event(to_sentry(event.metadata().target(), fields, request));
    }
}

fn to_sentry(target: &str, fields: EventFields, request: Option<RequestFields>) -> Event<'static> {
    let causes: Vec<String> = fields
        .causes
        .as_deref()
        .and_then(|json| serde_json::from_str(json).ok())
        .or_else(|| fields.error.clone().map(|e| vec![e]))
        .unwrap_or_default();
    // Sentry lists a chain innermost (the root cause) first.
    let exception = causes
        .iter()
        .rev()
        .map(|cause| Exception {
            ty: kind_of(cause),
            value: Some(cause.clone()),
            module: Some(target.to_owned()),
            ..Exception::default()
        })
        .collect::<Vec<_>>();
    // Grouped by what failed, not by the ids and names in the message text.
    let mut fingerprint = vec![target.to_owned(), fields.message.clone()];
    fingerprint.extend(causes.iter().map(|c| normalize(c)));
    let mut event = Event {
        level: Level::Error,
        message: Some(fields.message),
        logger: Some(target.to_owned()),
        exception: exception.into(),
        fingerprint: fingerprint.into_iter().map(Into::into).collect(),
        ..Event::default()
    };
    if let Some(request) = request {
        for (name, value) in [
            ("request_id", request.request_id),
            ("trace_id", request.trace_id),
            ("route", request.route),
            ("method", request.method),
            ("client_id", request.client_id),
        ] {
            if let Some(value) = value {
                event.tags.insert(name.to_owned(), value);
            }
        }
    }
    event
}

/// A cause's kind: its text before the first `:`, normalized ("database error").
fn kind_of(cause: &str) -> String {
    let head = cause.split(':').next().unwrap_or(cause);
    let kind = normalize(head);
    if kind.is_empty() {
        "error".to_owned()
    } else {
        kind
    }
}

/// `cause` with what varies between occurrences of one failure taken out: quoted names,
/// numbers, UUIDs and hex ids.
fn normalize(cause: &str) -> String {
    static VARYING: LazyLock<Vec<Regex>> = LazyLock::new(|| {
        [
            r#""[^"]*"|'[^']*'"#,
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}",
            r"\b[0-9a-fA-F]{16,}\b",
            r"\d+",
        ]
        .into_iter()
        .filter_map(|p| Regex::new(p).ok())
        .collect()
    });
    let mut out = cause.trim().to_owned();
    for pattern in VARYING.iter() {
        out = pattern.replace_all(&out, "_").into_owned();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_scrubbed() {
        let known = vec![
            "the-kek-value".to_owned(),
            "S3cret%20Pass%23word".to_owned(),
            "S3cret Pass#word".to_owned(),
        ];
        let cases = [
            ("refresh tsr_AbC-123_x failed", "tsr_[redacted]"),
            ("secret tsc_Zz9 used", "tsc_[redacted]"),
            ("token eyJhbGciOi.eyJzdWIi.c2ln here", "[jwt redacted]"),
            (
                "postgres://app:hunter2@db/tessera",
                "postgres://app:[redacted]@db",
            ),
            ("Authorization: Basic Z3c6c2VjcmV0", "[redacted]"),
            ("password=correct-horse&x=1", "password=[redacted]"),
            (
                r#"{"client_secret": "s3cr3t"}"#,
                r#""client_secret": [redacted]"#,
            ),
            ("kek is the-kek-value", "kek is [redacted]"),
            (
                r#""password": "correct horse battery""#,
                r#""password": [redacted]"#,
            ),
            (r#"{\"password\":\"hunter2\"}"#, "[redacted]"),
            ("field%3Dtsr_AbC-123", "field=tsr_[redacted]"),
            ("client%5Fsecret=s3cr3t", "client_secret=[redacted]"),
            ("password=correct%26horse%20battery", "password=[redacted]"),
            ("db pw S3cret%20Pass%23word here", "db pw [redacted] here"),
            ("client_secret=abc%22def", "client_secret=[redacted]"),
        ];
        for (input, expected) in cases {
            let out = scrub(input, &known);
            assert!(out.contains(expected), "{input:?} became {out:?}");
            for secret in [
                "AbC-123",
                "Zz9",
                "eyJzdWIi",
                "hunter2",
                "Z3c6",
                "correct-horse",
                "s3cr3t",
                "the-kek",
                "horse battery",
                "S3cret",
                "def",
            ] {
                assert!(!out.contains(secret), "{input:?} kept {secret:?}: {out:?}");
            }
        }
    }

    #[test]
    fn one_failure_groups_as_one_whatever_the_ids() {
        let a = normalize(
            r#"database error: error returned from database: relation "audit_log_p20261201" does not exist"#,
        );
        let b = normalize(
            r#"database error: error returned from database: relation "audit_log_p20261202" does not exist"#,
        );
        assert_eq!(a, b);
        assert_eq!(
            normalize(
                "row 42 of 9f86d081884c7d659a2feaa0c55ad015 for 123e4567-e89b-12d3-a456-426614174000"
            ),
            normalize(
                "row 7 of 0123456789abcdef0123456789abcdef for 00000000-0000-0000-0000-000000000000"
            ),
        );
        assert_eq!(kind_of("database error: x"), "database error");
    }
}
