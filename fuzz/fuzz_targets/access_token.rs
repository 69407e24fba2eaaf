//! Access-token verification as introspection and revocation run it: arbitrary text as a JWT
//! against a real key set. Nothing may panic, and nothing unsigned may verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tessera::crypto::jwt::{JwtSigner, VerificationKeys};
use tessera::crypto::keys::{KeyAlgorithm, generate};

struct Fixture {
    keys: VerificationKeys,
    genuine: String,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let es = generate(KeyAlgorithm::ES256).expect("key");
        let ed = generate(KeyAlgorithm::EdDSA).expect("key");
        let signer = JwtSigner::from_pkcs8(&es.kid, KeyAlgorithm::ES256, &es.pkcs8).expect("signer");
        let genuine = signer
            .sign(&serde_json::json!({ "iss": "https://auth.test", "sub": "u", "exp": 2_000, "iat": 1_000, "jti": "j" }))
            .expect("sign");
        Fixture { keys: VerificationKeys::from_jwks([&es.public_jwk, &ed.public_jwk]), genuine }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let text = String::from_utf8_lossy(data);
    let _ = f.keys.verify(&text, "https://auth.test", 1_500);
    // Mutating the genuine token anywhere must never verify (unless it is unchanged).
    if !data.is_empty() {
        let mut bytes = f.genuine.clone().into_bytes();
        let at = usize::from(data[0]) * 7 % bytes.len();
        let replacement = data.get(1).copied().unwrap_or(b'A');
        if bytes[at] != replacement && replacement.is_ascii_graphic() {
            bytes[at] = replacement;
            if let Ok(mutated) = String::from_utf8(bytes) {
                if f.keys.verify(&mutated, "https://auth.test", 1_500).is_ok() {
                    // Base64url's last character carries spare bits: a change there may decode
                    // to the same signature bytes. Anything else verifying is a bug.
                    assert!(at == f.genuine.len() - 1, "a mutated token verified: {mutated}");
                }
            }
        }
    }
});
