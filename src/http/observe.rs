//! Per-request observation: a request id (taken from `X-Request-Id` or generated, echoed back),
//! the caller's trace context (W3C `traceparent`, or Zipkin B3 headers), a span with method,
//! route, status and latency, and the HTTP metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

use crate::crypto::tokens;

pub const REQUEST_ID: &str = "x-request-id";

/// The caller's trace context: W3C Trace Context first, then Zipkin B3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the caller's span, our span's parent.
    pub span_id: Option<String>,
    pub sampled: bool,
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses the trace-context headers of a request, if any is well-formed.
pub fn incoming_trace(headers: &actix_web::http::header::HeaderMap) -> Option<TraceParent> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(tp) = header("traceparent") {
        // version "-" trace-id(32 hex) "-" parent-id(16 hex) "-" flags(2 hex)
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if let [version, trace, parent, flags] = parts.as_slice() {
            let lower = |s: &str| !s.bytes().any(|b| b.is_ascii_uppercase());
            if is_hex(version, 2)
                && *version != "ff"
                && is_hex(trace, 32)
                && is_hex(parent, 16)
                && is_hex(flags, 2)
                && lower(trace)
                && lower(parent)
                && trace.bytes().any(|b| b != b'0')
                && parent.bytes().any(|b| b != b'0')
            {
                let sampled = u8::from_str_radix(flags, 16).is_ok_and(|f| f & 1 == 1);
                return Some(TraceParent {
                    trace_id: (*trace).to_owned(),
                    span_id: Some((*parent).to_owned()),
                    sampled,
                });
            }
        }
    }
    // b3: {trace}-{span}[-{sampled}[-{parent}]] or the X-B3-* multi-header form.
    let (trace, span, sampled) = match header("b3") {
        Some(b3) => {
            let mut parts = b3.trim().split('-');
            (parts.next(), parts.next(), parts.next())
        }
        None => (
            header("x-b3-traceid"),
            header("x-b3-spanid"),
            header("x-b3-sampled"),
        ),
    };
    let nonzero = |s: &str| s.bytes().any(|b| b != b'0');
    let trace = trace.filter(|t| (is_hex(t, 32) || is_hex(t, 16)) && nonzero(t))?;
    Some(TraceParent {
        trace_id: format!("{:0>32}", trace.to_ascii_lowercase()),
        span_id: span
            .filter(|s| is_hex(s, 16) && nonzero(s))
            .map(str::to_ascii_lowercase),
        sampled: sampled.is_none_or(|s| s == "1" || s == "d" || s.eq_ignore_ascii_case("true")),
    })
}

/// Makes `span` a child of the caller's span for OpenTelemetry export (a no-op without it).
fn join_remote_trace(span: &tracing::Span, parent: &TraceParent) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let (Ok(trace_id), Some(Ok(span_id))) = (
        TraceId::from_hex(&parent.trace_id),
        parent.span_id.as_deref().map(SpanId::from_hex),
    ) else {
        return;
    };
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let remote = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(tokens::random_id, str::to_owned)
}

/// Answers 503 for a request still running after `limit`; the handler is dropped. Only a
/// database connection gone silent gets there: everything else has a shorter bound of its own.
pub async fn deadline(
    limit: std::time::Duration,
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    match tokio::time::timeout(limit, next.call(req)).await {
        Ok(outcome) => outcome,
        Err(_) => {
            tracing::warn!(limit = ?limit, "request timed out");
            Err(
                crate::http::error::ApiError(crate::oauth::OAuthError::TemporarilyUnavailable(
                    "the request took too long; retry".into(),
                ))
                .into(),
            )
        }
    }
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let incoming = incoming_trace(req.headers());
    let trace_id = incoming
        .as_ref()
        .map_or_else(|| tokens::random_hex(16), |t| t.trace_id.clone());
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    // Any token is a method to actix; unknown ones share one label so callers cannot mint
    // metric series.
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "HEAD" | "PUT" | "DELETE" | "PATCH" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        request_id = %id,
        trace_id = %trace_id,
        client_id = tracing::field::Empty,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    if let Some(parent) = &incoming {
        join_remote_trace(&span, parent);
    }
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = match &result {
        Ok(response) => response.status().as_u16(),
        Err(err) => err.as_response_error().status_code().as_u16(),
    };
    span.record("status", status);
    span.record("latency_ms", elapsed.as_secs_f64() * 1000.0);
    span.in_scope(|| tracing::info!("request completed"));
    let labels = [("route", route), ("method", method)];
    metrics::counter!(
        "tessera_http_requests_total",
        &[
            ("route", labels[0].1.clone()),
            ("method", labels[1].1.clone()),
            ("status", status.to_string()),
        ]
    )
    .increment(1);
    metrics::histogram!("tessera_http_request_duration_seconds", &labels)
        .record(elapsed.as_secs_f64());
    let mut response = result?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID), value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn parses_w3c_and_b3() {
        let w3c = incoming_trace(&headers(&[(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )]))
        .expect("w3c");
        assert_eq!(w3c.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(w3c.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(w3c.sampled);
        let b3 = incoming_trace(&headers(&[(
            "b3",
            "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1",
        )]))
        .expect("b3");
        assert_eq!(b3.trace_id, "80f198ee56343ba864fe8b2a57d3eff7");
        let multi = incoming_trace(&headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ]))
        .expect("x-b3");
        assert_eq!(multi.trace_id, "0000000000000000463ac35c9f6413ad");
    }

    #[test]
    fn ignores_malformed_context() {
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "garbage",
        ] {
            let map = headers(&[("traceparent", bad)]);
            assert_eq!(incoming_trace(&map), None, "{bad}");
        }
        assert_eq!(
            incoming_trace(&headers(&[("b3", "nothex-e457b5a2e4d86bd1")])),
            None
        );
    }
}
