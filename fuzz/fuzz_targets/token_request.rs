//! The token-request parser: an Authorization header and a form body, as the token endpoint
//! reads them. Anything may be refused; nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera::http::client_auth::parse_basic;
use tessera::http::form;
use tessera::oauth::scope;

fuzz_target!(|data: &[u8]| {
    // First line: the Authorization header value; the rest: the body.
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    if let Ok((id, secret)) = parse_basic(header) {
        assert!(!id.is_empty());
        let _ = secret.expose().len();
    }
    if let Ok(params) = form::parse(body) {
        for name in ["grant_type", "username", "password", "scope", "refresh_token", "client_id"] {
            if let Some(value) = params.get(name) {
                assert!(!value.is_empty(), "empty values are treated as absent");
                assert!(!value.contains('\0'));
            }
        }
        if let Some(raw) = params.get("scope") {
            if let Ok(tokens) = scope::parse(raw) {
                assert!(tokens.iter().all(|t| scope::is_valid_token(t)));
            }
        }
    }
});
