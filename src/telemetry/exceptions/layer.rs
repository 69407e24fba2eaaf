//! The tracing layer: `error` events become tracker events, named by the request span around
//! them and grouped by what failed rather than by the ids in the message.

use std::sync::LazyLock;
use std::sync::atomic::Ordering;

use regex::Regex;
use sentry::protocol::{Event, Exception, Level};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Id, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::ENABLED;

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

impl EventFields {
    /// An error event that is part of normal operation, which the log keeps but the tracker
    /// does not: sqlx's report of a connection Tessera refused because its host was a standby,
    /// once per attempt for as long as a failover lasts.
    fn is_expected(&self) -> bool {
        self.error
            .as_deref()
            .is_some_and(|e| e.contains(crate::store::READ_ONLY_HOST_REFUSED))
    }
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
        if fields.is_expected() {
            return;
        }
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
    fn a_standby_refused_during_a_failover_is_not_an_exception() {
        let refused = EventFields {
            message: "error returned from after_connect".into(),
            error: Some(format!(
                "encountered unexpected or invalid data: {}",
                crate::store::READ_ONLY_HOST_REFUSED
            )),
            causes: None,
        };
        assert!(refused.is_expected());
        let other = EventFields {
            message: "error returned from after_connect".into(),
            error: Some("error returned from database: permission denied".into()),
            causes: None,
        };
        assert!(!other.is_expected());
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
