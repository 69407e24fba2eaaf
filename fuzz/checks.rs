//! What each fuzz target checks, shared by the fuzz targets (`fuzz/fuzz_targets/`) and the
//! regression test that replays every input under `fuzz/regressions/` in the normal test suite
//! (`tests/fuzz_regressions.rs`), so a crash once found stays fixed.

use std::sync::OnceLock;

use tessera::crypto::jwt::{JwtSigner, VerificationKeys};
use tessera::crypto::keys::{KeyAlgorithm, generate};
use tessera::http::client_auth::parse_basic;
use tessera::http::form;
use tessera::oauth::scope;

/// The token-request parser: first line the Authorization header value, the rest the form
/// body, as the token endpoint reads them. Anything may be refused; nothing may panic.
pub fn token_request(data: &[u8]) {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    if let Ok((id, secret)) = parse_basic(header) {
        assert!(!id.is_empty());
        let _ = secret.expose().len();
    }
    if let Ok(params) = form::parse(body) {
        for name in [
            "grant_type",
            "username",
            "password",
            "scope",
            "refresh_token",
            "client_id",
        ] {
            if let Some(value) = params.get(name) {
                assert!(!value.is_empty(), "empty values are treated as absent");
                assert!(!value.contains('\0'));
            }
        }
        if let Some(raw) = params.get("scope")
            && let Ok(tokens) = scope::parse(raw)
        {
            assert!(tokens.iter().all(|t| scope::is_valid_token(t)));
        }
    }
}

struct Fixture {
    keys: VerificationKeys,
    genuine: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let es = generate(KeyAlgorithm::ES256).expect("key");
        let ed = generate(KeyAlgorithm::EdDSA).expect("key");
        let signer =
            JwtSigner::from_pkcs8(&es.kid, KeyAlgorithm::ES256, &es.pkcs8).expect("signer");
        let genuine = signer
            .sign(&serde_json::json!({
                "iss": "https://auth.test", "sub": "u", "exp": 2_000, "iat": 1_000, "jti": "j"
            }))
            .expect("sign");
        Fixture {
            keys: VerificationKeys::from_jwks([&es.public_jwk, &ed.public_jwk]),
            genuine,
        }
    })
}

/// Access-token verification as introspection and revocation run it: arbitrary text as a JWT
/// against a real key set. Nothing may panic, and nothing unsigned may verify.
pub fn access_token(data: &[u8]) {
    let f = fixture();
    let text = String::from_utf8_lossy(data);
    let _ = f.keys.verify(&text, "https://auth.test", 1_500);
    // Mutating the genuine token anywhere must never verify (unless it is unchanged).
    if let Some(first) = data.first() {
        let mut bytes = f.genuine.clone().into_bytes();
        let at = usize::from(*first) * 7 % bytes.len();
        let replacement = data.get(1).copied().unwrap_or(b'A');
        if bytes[at] != replacement && replacement.is_ascii_graphic() {
            bytes[at] = replacement;
            if let Ok(mutated) = String::from_utf8(bytes)
                && f.keys.verify(&mutated, "https://auth.test", 1_500).is_ok()
            {
                // Base64url's last character carries spare bits: a change there may decode
                // to the same signature bytes. Anything else verifying is a bug.
                assert!(
                    at == f.genuine.len() - 1,
                    "a mutated token verified: {mutated}"
                );
            }
        }
    }
}
