//! Criterion micro-benchmarks of the hot pure functions on the token endpoints:
//! JWT signing per algorithm (keys parsed once, as the server keeps them), JWT verification as
//! introspection does it, refresh-token generation and hashing, form parsing, and Basic
//! credential parsing (`Authorization: Basic`, RFC 6749 §2.3.1) with the secret check.
//!
//! Run with `cargo bench --bench hot_paths`; `cargo bench --bench hot_paths -- jwt_sign` for one
//! group.

use std::hint::black_box;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use tessera::clock::{Clock, SystemClock};
use tessera::crypto::jwt::{JwtSigner, VerificationKeys};
use tessera::crypto::keys::{KeyAlgorithm, generate};
use tessera::crypto::tokens;
use tessera::http::client_auth::parse_basic;
use tessera::http::form;

const ISSUER: &str = "https://auth.example.com";
const ALGORITHMS: [KeyAlgorithm; 3] = [
    KeyAlgorithm::ES256,
    KeyAlgorithm::EdDSA,
    KeyAlgorithm::RS256,
];

/// Claims shaped like a password-grant access token (RFC 9068 plus roles and username).
fn user_claims(now: i64) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "6f1c2a7e-3b8d-4e7a-9c61-0d2f5b8e4a13",
        "aud": ["api://orders"],
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": tokens::random_id(),
        "client_id": "gateway",
        "scope": "read write",
        "roles": ["member", "admin"],
        "preferred_username": "alice",
    })
}

fn now() -> i64 {
    SystemClock.now()
}

fn jwt(c: &mut Criterion) {
    let now = now();
    let claims = user_claims(now);
    let mut sign = c.benchmark_group("jwt_sign");
    for alg in ALGORITHMS {
        let key = generate(alg).expect("key generation");
        let signer = JwtSigner::from_pkcs8(&key.kid, alg, &key.pkcs8).expect("signer");
        sign.bench_with_input(BenchmarkId::from_parameter(alg), &claims, |b, claims| {
            b.iter(|| signer.sign(black_box(claims)).expect("sign"));
        });
    }
    sign.finish();

    // Introspection of an access token: header decode, signature check, claim checks.
    let mut verify = c.benchmark_group("jwt_verify");
    for alg in ALGORITHMS {
        let key = generate(alg).expect("key generation");
        let signer = JwtSigner::from_pkcs8(&key.kid, alg, &key.pkcs8).expect("signer");
        let token = signer.sign(&claims).expect("sign");
        let keys = VerificationKeys::from_jwks([&key.public_jwk]);
        verify.bench_with_input(BenchmarkId::from_parameter(alg), &token, |b, token| {
            b.iter(|| {
                keys.verify(black_box(token), ISSUER, now)
                    .expect("verifies")
            });
        });
    }
    verify.finish();

    // Parsing a PKCS#8 key: what signing would cost again per token if keys were not kept parsed.
    let mut parse = c.benchmark_group("jwt_key_parse");
    for alg in ALGORITHMS {
        let key = generate(alg).expect("key generation");
        parse.bench_with_input(BenchmarkId::from_parameter(alg), &key.pkcs8, |b, pkcs8| {
            b.iter(|| JwtSigner::from_pkcs8("kid", alg, black_box(pkcs8)).expect("parses"));
        });
    }
    parse.finish();
}

fn opaque_tokens(c: &mut Criterion) {
    let mut group = c.benchmark_group("tokens");
    let token = tokens::generate(tokens::REFRESH_PREFIX);
    group.bench_function("hash_sha256", |b| {
        b.iter(|| tokens::hash(black_box(&token)));
    });
    group.bench_function("generate_refresh", |b| {
        b.iter(|| tokens::generate(black_box(tokens::REFRESH_PREFIX)));
    });
    group.bench_function("random_id", |b| b.iter(tokens::random_id));
    group.finish();
}

fn forms(c: &mut Criterion) {
    let refresh = format!(
        "grant_type=refresh_token&refresh_token={}",
        tokens::generate(tokens::REFRESH_PREFIX)
    );
    let bodies: [(&str, String); 4] = [
        (
            "password",
            "grant_type=password&username=bench0042&password=correct%20horse%20battery%20staple&scope=read+write"
                .to_owned(),
        ),
        ("refresh_token", refresh),
        ("client_credentials", "grant_type=client_credentials&scope=read".to_owned()),
        (
            "client_secret_post",
            format!(
                "grant_type=client_credentials&client_id=service&client_secret={}&scope=read",
                tokens::generate(tokens::CLIENT_SECRET_PREFIX)
            ),
        ),
    ];
    let mut group = c.benchmark_group("form_parse");
    for (name, body) in &bodies {
        group.bench_with_input(BenchmarkId::from_parameter(name), body, |b, body| {
            b.iter(|| form::parse(black_box(body.as_bytes())).expect("parses"));
        });
    }
    group.finish();
}

fn basic(c: &mut Criterion) {
    let secret = tokens::generate(tokens::CLIENT_SECRET_PREFIX);
    let header = format!(
        "Basic {}",
        STANDARD.encode(format!("bench-gateway:{secret}"))
    );
    let mut group = c.benchmark_group("basic_parse");
    group.bench_function("client_secret_basic", |b| {
        b.iter(|| parse_basic(black_box(header.as_bytes())).expect("parses"));
    });
    // Checking the secret as the server stores it: SHA-256, then a constant-time compare.
    let stored = tokens::hash(&secret);
    group.bench_function("secret_check_sha256", |b| {
        b.iter(|| {
            let presented = tokens::hash(black_box(&secret));
            bool::from(presented.ct_eq(&stored))
        });
    });
    group.finish();
}

criterion_group!(benches, jwt, opaque_tokens, forms, basic);
criterion_main!(benches);
