# syntax=docker/dockerfile:1
# Multi-stage build: compile in the Rust image, run from a slim Debian with a non-root user.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY vendor vendor
COPY src src
COPY migrations migrations
COPY config config
COPY tests tests
COPY benches benches
RUN cargo build --release --locked --bin tessera

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /var/lib/tessera tessera
COPY --from=build /src/target/release/tessera /usr/local/bin/tessera
USER tessera
WORKDIR /var/lib/tessera
# Settings come from TESSERA__SECTION__KEY variables (see config/default.toml).
# /metrics has a port of its own, reachable on the container network (Prometheus beside it) but
# published only if you publish it; the OAuth port never serves it.
ENV TESSERA__SERVER__BIND=0.0.0.0:8080 \
    TESSERA__METRICS__BIND=0.0.0.0:9464 \
    TESSERA__LOG__FORMAT=json
EXPOSE 8080 9464
# The binary probes its own listener (no curl in the image): /healthz, so that a database
# outage, which Tessera rides out by itself, does not get the container restarted.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["tessera", "healthcheck", "--live"]
ENTRYPOINT ["tessera"]
CMD ["serve"]
