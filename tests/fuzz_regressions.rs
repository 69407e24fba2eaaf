//! Replays every input under `fuzz/regressions/<target>/` through the checks its fuzz target
//! runs (`fuzz/checks.rs`): each crash `scripts/fuzz` ever found, plus hand-picked edge cases.
//! Runs in the normal suite, on the stable toolchain, without cargo-fuzz.

#[allow(dead_code)]
#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("entry").path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no inputs in {}", dir.display());
    for input in &inputs {
        let data = std::fs::read(input).expect("input");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{} fails its check", input.display());
    }
    eprintln!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn token_request_regressions() {
    replay("token_request", checks::token_request);
}

#[test]
fn access_token_regressions() {
    replay("access_token", checks::access_token);
}
