//! Prometheus metrics through the `metrics` facade. The recorder is process-wide; every
//! instance of the app in one process (tests) shares it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets in seconds: sub-millisecond token issuance up to slow password hashing.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Installs the recorder (once) and returns the handle that renders the exposition text.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
                .ok()?;
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    metrics::gauge!("tessera_build_info", "version" => env!("CARGO_PKG_VERSION"))
                        .set(1.0);
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed");
                    None
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tessera_http_requests_total",
        "HTTP requests by route template, method and status"
    );
    describe_histogram!(
        "tessera_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request latency by route template and method"
    );
    describe_counter!(
        "tessera_tokens_issued_total",
        "Access tokens issued by grant and client"
    );
    describe_counter!(
        "tessera_client_lookups_total",
        "Client records looked up, from memory (the Postgres client cache) or the database"
    );
    describe_counter!(
        "tessera_batched_requests_total",
        "Introspection checks and refresh rotations run in shared statements, on Postgres"
    );
    describe_counter!(
        "tessera_batched_statements_total",
        "Statements those took (concurrent requests share one)"
    );
    describe_counter!(
        "tessera_login_failures_total",
        "Failed password logins by reason"
    );
    describe_counter!(
        "tessera_refresh_reuse_detected_total",
        "Rotated refresh tokens presented again (family revoked)"
    );
    describe_counter!(
        "tessera_refresh_theft_suspected_total",
        "Refresh tokens presented by a client they were not issued to (family revoked)"
    );
    describe_counter!(
        "tessera_revocations_total",
        "Tokens revoked at the revocation endpoint by kind"
    );
    describe_counter!(
        "tessera_audit_written_total",
        "Audit events written by the shared writer"
    );
    describe_counter!(
        "tessera_audit_flushes_total",
        "Multi-row audit INSERTs made by the shared writer"
    );
    describe_counter!(
        "tessera_audit_timeouts_total",
        "Requests failed because their audit events could not be written in time"
    );
    describe_counter!(
        "tessera_audit_dropped_total",
        "Audit events dropped (audit.on_overload = \"drop\" only)"
    );
    describe_gauge!(
        "tessera_password_hash_waiting",
        "Password hashes waiting for a hashing slot"
    );
    describe_histogram!(
        "tessera_password_hash_duration_seconds",
        Unit::Seconds,
        "Time to hash or verify one password"
    );
    describe_gauge!(
        "tessera_db_pool_connections",
        "Database pool connections by state (in_use, idle)"
    );
    describe_gauge!(
        "tessera_build_info",
        "Build information; the value is always 1"
    );
}
