//! Forged, foreign-key and tampered JWTs for the introspection endpoint.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tessera::crypto::jwt::JwtSigner;
use tessera::crypto::keys::{self, KeyAlgorithm};

use crate::helpers::{ISSUER, kid_of};

/// The claims a genuine access token for alice would carry.
fn alice_claims(now: i64, alice_id: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": alice_id,
        "aud": "tessera",
        "exp": now + 600,
        "iat": now,
        "nbf": now,
        "jti": "forged-jti",
        "client_id": "gateway",
        "scope": "read write",
        "preferred_username": "alice",
        "roles": ["admin"],
    })
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

fn at_header(alg: Algorithm, kid: &str) -> Header {
    let mut header = Header::new(alg);
    header.typ = Some("at+jwt".into());
    header.kid = Some(kid.into());
    header
}

/// SubjectPublicKeyInfo PEM of a P-256 point (what a key-confusion attacker would use as the
/// HMAC secret).
fn p256_pem(point: &[u8]) -> String {
    let mut der = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    der.extend_from_slice(point);
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ascii"))
        .collect();
    format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        lines.join("\n")
    )
}

/// Forged, foreign-key and tampered JWTs; each must introspect as inactive.
pub(super) fn forged_tokens(
    now: i64,
    alice_id: &str,
    jwks: &Value,
    genuine: &str,
) -> Vec<(String, String)> {
    let our_kid = kid_of(genuine);
    let our_jwk = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == our_kid.as_str())
        .expect("active key in the JWKS")
        .clone();
    let good = alice_claims(now, alice_id);
    let payload = b64(&good);
    let mut out: Vec<(String, String)> = Vec::new();

    // alg: none, in several spellings, with and without a signature.
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = b64(&json!({ "alg": alg, "typ": "at+jwt", "kid": our_kid }));
        out.push((
            format!("alg {alg}, empty signature"),
            format!("{header}.{payload}."),
        ));
    }
    let none_header = b64(&json!({ "alg": "none", "typ": "at+jwt", "kid": our_kid }));
    out.push((
        "alg none, no signature segment".into(),
        format!("{none_header}.{payload}"),
    ));
    let genuine_sig = genuine.rsplit('.').next().expect("signature");
    out.push((
        "alg none, genuine signature kept".into(),
        format!("{none_header}.{payload}.{genuine_sig}"),
    ));
    let genuine_payload = genuine.split('.').nth(1).expect("payload");
    out.push((
        "genuine payload re-headed as alg none".into(),
        format!("{none_header}.{genuine_payload}."),
    ));

    // HS256 keyed with public key material (algorithm confusion), with our kid.
    let point = {
        let x = URL_SAFE_NO_PAD
            .decode(our_jwk["x"].as_str().expect("x"))
            .expect("x b64");
        let y = URL_SAFE_NO_PAD
            .decode(our_jwk["y"].as_str().expect("y"))
            .expect("y b64");
        let mut p = vec![0x04];
        p.extend(x);
        p.extend(y);
        p
    };
    let secrets: Vec<(&str, Vec<u8>)> = vec![
        ("the JWK JSON", our_jwk.to_string().into_bytes()),
        ("the JWKS document", jwks.to_string().into_bytes()),
        ("the raw EC point", point.clone()),
        (
            "the x coordinate text",
            our_jwk["x"].as_str().expect("x").as_bytes().to_vec(),
        ),
        ("the PEM public key", p256_pem(&point).into_bytes()),
    ];
    for (what, secret) in &secrets {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let token = jsonwebtoken::encode(
                &at_header(alg, &our_kid),
                &good,
                &EncodingKey::from_secret(secret),
            )
            .expect("hmac token");
            out.push((format!("{alg:?} keyed with {what}"), token));
        }
    }

    // A key that is not ours: unknown kid, our kid, and headers pointing at keys elsewhere.
    let foreign = keys::generate(KeyAlgorithm::ES256).expect("foreign key");
    let foreign_signer =
        JwtSigner::from_pkcs8(&foreign.kid, KeyAlgorithm::ES256, &foreign.pkcs8).expect("signer");
    out.push((
        "foreign key, foreign kid".into(),
        foreign_signer.sign(&good).expect("sign"),
    ));
    let impostor =
        JwtSigner::from_pkcs8(&our_kid, KeyAlgorithm::ES256, &foreign.pkcs8).expect("signer");
    out.push((
        "foreign key, our kid".into(),
        impostor.sign(&good).expect("sign"),
    ));
    let foreign_der = EncodingKey::from_ec_der(&foreign.pkcs8);
    let foreign_jwk: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(foreign.public_jwk.clone()).expect("jwk");
    for kid in [foreign.kid.as_str(), our_kid.as_str()] {
        let mut h = at_header(Algorithm::ES256, kid);
        h.jku = Some("https://attacker.example/.well-known/jwks.json".into());
        out.push((
            format!("jku elsewhere, kid {kid}"),
            jsonwebtoken::encode(&h, &good, &foreign_der).expect("sign"),
        ));
        let mut h = at_header(Algorithm::ES256, kid);
        h.x5u = Some("https://attacker.example/cert.pem".into());
        out.push((
            format!("x5u elsewhere, kid {kid}"),
            jsonwebtoken::encode(&h, &good, &foreign_der).expect("sign"),
        ));
        let mut h = at_header(Algorithm::ES256, kid);
        h.jwk = Some(foreign_jwk.clone());
        out.push((
            format!("embedded jwk, kid {kid}"),
            jsonwebtoken::encode(&h, &good, &foreign_der).expect("sign"),
        ));
    }
    let mut h = at_header(Algorithm::ES256, &foreign.kid);
    h.kid = None;
    h.jwk = Some(foreign_jwk);
    out.push((
        "embedded jwk, no kid".into(),
        jsonwebtoken::encode(&h, &good, &foreign_der).expect("sign"),
    ));
    for kid in [
        "../../../../etc/passwd",
        "' OR '1'='1",
        "",
        "\u{0}",
        &"k".repeat(5000),
    ] {
        out.push((
            format!("hostile kid {:?}", kid.chars().take(24).collect::<String>()),
            jsonwebtoken::encode(&at_header(Algorithm::ES256, kid), &good, &foreign_der)
                .expect("sign"),
        ));
    }

    // Expired and not-yet-valid tokens from a key not in our JWKS.
    let mut expired = good.clone();
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    expired["exp"] = json!(now - 3600);
    let mut future = good.clone();
    future["iat"] = json!(now + 3600);
    future["nbf"] = json!(now + 3600);
    future["exp"] = json!(now + 7200);
    for (what, claims) in [("expired", &expired), ("nbf in the future", &future)] {
        out.push((
            format!("{what}, foreign key"),
            foreign_signer.sign(claims).expect("sign"),
        ));
        out.push((
            format!("{what}, foreign key with our kid"),
            impostor.sign(claims).expect("sign"),
        ));
    }

    // A genuine token, tampered.
    let parts: Vec<&str> = genuine.split('.').collect();
    let mut payload_bytes = URL_SAFE_NO_PAD.decode(parts[1]).expect("payload");
    let at = payload_bytes
        .windows(7)
        .position(|w| w == b"\"alice\"")
        .expect("username in the payload");
    payload_bytes[at + 5] = b'f'; // "alice" -> "alicf": one byte
    out.push((
        "genuine token, one payload byte changed".into(),
        format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(&payload_bytes),
            parts[2]
        ),
    ));
    let mut escalated: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("payload")).expect("json");
    escalated["scope"] = json!("read write admin");
    escalated["exp"] = json!(now + 86_400 * 365);
    out.push((
        "genuine token, claims rewritten".into(),
        format!("{}.{}.{}", parts[0], b64(&escalated), parts[2]),
    ));
    let mut b64_tampered = parts[1].as_bytes().to_vec();
    let i = b64_tampered.len() / 2;
    b64_tampered[i] = if b64_tampered[i] == b'A' { b'B' } else { b'A' };
    out.push((
        "genuine token, one base64 character changed".into(),
        format!(
            "{}.{}.{}",
            parts[0],
            String::from_utf8(b64_tampered).expect("ascii"),
            parts[2]
        ),
    ));
    out.push((
        "genuine token, signature removed".into(),
        format!("{}.{}.", parts[0], parts[1]),
    ));
    let mut sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("sig");
    sig[0] ^= 1;
    out.push((
        "genuine token, one signature bit flipped".into(),
        format!("{}.{}.{}", parts[0], parts[1], URL_SAFE_NO_PAD.encode(&sig)),
    ));
    let typ_jwt = b64(&json!({ "alg": "ES256", "typ": "JWT", "kid": our_kid }));
    out.push((
        "genuine payload and signature under another header".into(),
        format!("{typ_jwt}.{}.{}", parts[1], parts[2]),
    ));
    out.push((
        "genuine token with a fourth segment".into(),
        format!("{genuine}.{}", parts[2]),
    ));
    out.push((
        "genuine token doubled".into(),
        format!("{genuine}{genuine}"),
    ));
    out.push(("two dots".into(), "..".into()));
    out.push(("not a JWT".into(), "a.b.c".into()));
    out
}
