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

/// A trace id from the caller's headers, if well-formed: W3C Trace Context first, then B3.
pub fn incoming_trace_id(req: &ServiceRequest) -> Option<String> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    if let Some(tp) = header("traceparent") {
        // version "-" trace-id(32 hex) "-" parent-id(16 hex) "-" flags(2 hex)
        let parts: Vec<&str> = tp.trim().split('-').collect();
        if let [version, trace, parent, flags] = parts.as_slice() {
            let hex = |s: &str, n: usize| {
                s.len() == n
                    && s.bytes()
                        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            };
            if hex(version, 2)
                && *version != "ff"
                && hex(trace, 32)
                && hex(parent, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0')
            {
                return Some((*trace).to_owned());
            }
        }
    }
    let b3 = header("b3")
        .and_then(|v| v.split('-').next())
        .or_else(|| header("x-b3-traceid"))?;
    let valid = (b3.len() == 32 || b3.len() == 16) && b3.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| format!("{:0>32}", b3.to_ascii_lowercase()))
}

fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(tokens::random_id, str::to_owned)
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let id = request_id(&req);
    let trace_id = incoming_trace_id(&req).unwrap_or_else(|| tokens::random_hex(16));
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        request_id = %id,
        trace_id = %trace_id,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
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
