//! The token-request parser (Authorization header + form body); see `checks.rs`.
#![no_main]

#[allow(dead_code)] // each target uses one of the checks
#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::token_request(data));
